//! The pure logic of `vmdistributed-webhook check -f FILE|-`: defaulting and validation of
//! `VMDistributed` manifests offline, for CI pipelines that run it before `kubectl apply`.
//!
//! Input is multi-document YAML. For every `VMDistributed` the defaulted object is printed on
//! stdout as YAML (documents separated by `---`), and its warnings and errors on stderr with the
//! document number, its first line and the field path. Documents of other kinds are skipped with
//! a note on stderr. A YAML syntax error names the document and the line. The exit code is 1 when
//! any document has an error, 0 otherwise (also when nothing was found, which is noted).

use std::fmt::Write as _;

use serde_json::Value;

use super::CliOutput;
use crate::VMDistributed;
use crate::api::KIND;
use crate::defaults::default_in_place;
use crate::parse::strict;
use crate::validation::validate_value;

/// One YAML document of the input: its 1-based number and first line, and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Document<'a> {
    /// 1-based position among the non-empty documents of the input.
    pub number: usize,
    /// 1-based line of the input where the document starts.
    pub first_line: usize,
    /// The document's text (including its `---` line, if any).
    pub text: &'a str,
}

/// Split multi-document YAML into its documents, keeping line numbers.
///
/// A document starts at a line that begins with `---` (followed by nothing or whitespace) and
/// ends before the next such line or after a `...` line, as in the YAML spec (document markers
/// are only recognised at the start of a line, where no document content can be). Documents
/// with nothing but blank lines, comments and markers are skipped.
#[must_use]
pub fn split_documents(input: &str) -> Vec<Document<'_>> {
    let mut documents = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in input.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        let bare = line.trim_end_matches(['\n', '\r']);
        if is_marker(bare, "---") {
            push_document(input, start_byte..offset, start_line, &mut documents);
            start_byte = offset;
            start_line = line_no;
        } else if is_marker(bare, "...") {
            push_document(input, start_byte..offset, start_line, &mut documents);
            start_byte = offset + line.len();
            start_line = line_no + 1;
        }
        offset += line.len();
    }
    push_document(input, start_byte..input.len(), start_line, &mut documents);
    documents
}

fn push_document<'a>(
    input: &'a str,
    range: std::ops::Range<usize>,
    first_line: usize,
    documents: &mut Vec<Document<'a>>,
) {
    let text = &input[range];
    if has_content(text) {
        documents.push(Document {
            number: documents.len() + 1,
            first_line,
            text,
        });
    }
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

fn has_content(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        !(line.is_empty()
            || line.starts_with('#')
            || line.starts_with('%')
            || is_marker(line, "---") && line[3..].trim_start().starts_with('#')
            || line == "---")
    })
}

impl Document<'_> {
    /// `document N (line L)`, the prefix of every message about this document.
    #[must_use]
    pub fn label(&self) -> String {
        format!("document {} (line {})", self.number, self.first_line)
    }
}

/// One document of the input as the offline CLIs see it.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A `VMDistributed`, as JSON.
    Object(Value),
    /// Nothing but comments or whitespace.
    Empty,
    /// Not valid YAML; the error, with its line, went to stderr.
    Broken,
    /// Another kind; a note saying it is skipped went to stderr.
    OtherKind,
}

/// Parse one document for `check` and `render`, writing YAML errors and skip notes to stderr
/// so both CLIs report input problems the same way.
pub(crate) fn parse_document(doc: &Document<'_>, label: &str, out: &mut CliOutput) -> Parsed {
    let options = serde_saphyr::render_options! {
        line_offset: (doc.first_line - 1) as u64,
        snippets: serde_saphyr::SnippetMode::Off,
    };
    let value: Value = match serde_saphyr::from_str(doc.text) {
        Ok(value) => value,
        Err(err) => {
            let _ = writeln!(
                out.stderr,
                "{label}: invalid YAML: {}",
                err.render_with_options(options)
            );
            return Parsed::Broken;
        }
    };
    if value.is_null() {
        return Parsed::Empty;
    }
    let kind = value.get("kind").and_then(Value::as_str);
    if kind != Some(KIND) {
        let what = match (
            kind,
            value.pointer("/metadata/name").and_then(Value::as_str),
        ) {
            (Some(kind), Some(name)) => format!("{kind} {name:?}"),
            (Some(kind), None) => kind.to_owned(),
            (None, _) => "a document without kind".to_owned(),
        };
        let _ = writeln!(out.stderr, "{label}: skipped {what}: not a {KIND}");
        return Parsed::OtherKind;
    }
    Parsed::Object(value)
}

/// Default and validate every `VMDistributed` in `input` (multi-document YAML).
#[must_use]
pub fn check_documents(input: &str) -> CliOutput {
    let mut out = CliOutput::default();
    let (mut checked, mut invalid, mut broken, mut skipped) = (0usize, 0usize, 0usize, 0usize);
    for doc in split_documents(input) {
        let label = doc.label();
        let value = match parse_document(&doc, &label, &mut out) {
            Parsed::Object(value) => value,
            Parsed::Empty => continue,
            Parsed::Broken => {
                broken += 1;
                continue;
            }
            Parsed::OtherKind => {
                skipped += 1;
                continue;
            }
        };
        checked += 1;
        let name = object_name(&value);
        let report = validate_value(&value, None);
        if let Ok(mut cr) = strict::<VMDistributed>(&value) {
            default_in_place(&mut cr);
            match render_yaml(&cr) {
                Ok(yaml) => {
                    out.stdout.push_str("---\n");
                    out.stdout.push_str(&yaml);
                }
                Err(err) => {
                    let _ = writeln!(out.stderr, "{label}: cannot print {name}: {err}");
                }
            }
        }
        for warning in &report.warnings {
            let _ = writeln!(out.stderr, "{label}: {name}: warning: {warning}");
        }
        for error in &report.errors {
            let _ = writeln!(out.stderr, "{label}: {name}: error: {error}");
        }
        if !report.is_valid() {
            invalid += 1;
        }
    }
    if checked == 0 && broken == 0 {
        let _ = writeln!(out.stderr, "no {KIND} found");
    } else {
        let _ = writeln!(
            out.stderr,
            "checked {checked} {KIND}: {} valid, {invalid} with errors; {broken} document(s) \
             with invalid YAML; {skipped} other document(s) skipped",
            checked - invalid
        );
    }
    out.exit_code = i32::from(invalid + broken > 0);
    out
}

/// `VMDistributed <namespace>/<name>` (or without namespace) for messages.
fn object_name(value: &Value) -> String {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<no name>");
    match value.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) => format!("{KIND} {ns}/{name}"),
        None => format!("{KIND} {name}"),
    }
}

/// The object as YAML, without a `status` (manifests carry none).
fn render_yaml(cr: &VMDistributed) -> Result<String, String> {
    let mut value = serde_json::to_value(cr).map_err(|e| e.to_string())?;
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    serde_saphyr::to_string(&value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_line_numbers() {
        let input = "# header\n---\na: 1\n---\n# only a comment\n---\nb: 2\n...\nc: 3\n";
        let docs = split_documents(input);
        let got: Vec<(usize, usize, &str)> = docs
            .iter()
            .map(|d| (d.number, d.first_line, d.text))
            .collect();
        assert_eq!(
            got,
            [
                (1, 2, "---\na: 1\n"),
                (2, 6, "---\nb: 2\n"),
                (3, 9, "c: 3\n")
            ]
        );
    }

    #[test]
    fn document_without_marker_and_marker_with_content() {
        let docs = split_documents("a: 1\n--- # next\nb: 2");
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[1].first_line, docs[1].text), (2, "--- # next\nb: 2"));
        assert!(split_documents("").is_empty());
        assert!(split_documents("---\n# nothing\n---\n").is_empty());
        // `----` and `---x` are content, not markers.
        assert_eq!(split_documents("a: |\n ---x\n").len(), 1);
    }
}
