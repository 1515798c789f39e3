//! Field paths in the `spec.zones[1].vmcluster.spec.vminsert` form used in every error message.

/// The path of `key` inside the object at `parent`.
///
/// Keys made of letters, digits, `-`, `_`, `$` and `%` are appended with a dot; anything else
/// (dots, slashes, spaces, as in `topology.kubernetes.io/zone`) is quoted in brackets so the path
/// stays unambiguous.
pub(crate) fn child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '$' | '%'));
    if plain {
        if parent.is_empty() {
            key.to_owned()
        } else {
            format!("{parent}.{key}")
        }
    } else {
        // serde_json's string encoding gives the JSON escaping of quotes and control characters.
        let quoted = serde_json::Value::String(key.to_owned()).to_string();
        format!("{parent}[{quoted}]")
    }
}

#[cfg(test)]
mod tests {
    use super::child;

    #[test]
    fn plain_and_quoted_keys() {
        assert_eq!(child("spec", "zones"), "spec.zones");
        assert_eq!(child("", "spec"), "spec");
        assert_eq!(child("a", "x.y/z"), "a[\"x.y/z\"]");
        assert_eq!(child("a", "q\""), "a[\"q\\\"\"]");
        assert_eq!(child("a", ""), "a[\"\"]");
    }
}
