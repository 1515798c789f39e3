//! `docs/api.md` must document exactly the fields of the generated CRD schema.
//!
//! Convention: a field is documented by a Markdown table row whose first cell is the field path in
//! backticks, `spec.` or `status.` first, `[]` for list items:
//!
//! ```text
//! | `spec.zones[].vmcluster.ref.name` | string | – | ... |
//! ```
//!
//! Mentions in prose do not count; only such rows do. Enumerated fields must list every allowed
//! value (in backticks) in their row. Full `VMDistributed` manifests in `yaml` code blocks of the
//! docs must decode strictly, files the docs point at (`examples/`, `docs/`, `charts/`) must
//! exist, the example output of `check` and `render` in `docs/cli.md` must be what the CLI logic
//! prints, and `docs/operations.md` must list exactly the metrics the binaries register.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;
use shared::VMDistributed;
use shared::crd::crd_yaml;
use shared::parse::strict;

const API_DOC: &str = "docs/api.md";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_repo_file(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// Every property path of the served version's schema (below `spec` and `status`), with its schema.
fn schema_paths() -> BTreeMap<String, Value> {
    fn walk(path: &str, schema: &Value, out: &mut BTreeMap<String, Value>) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                let here = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                if !path.is_empty() {
                    out.insert(here.clone(), prop.clone());
                }
                walk(&here, prop, out);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, out);
        }
    }
    let crd: Value = serde_saphyr::from_str(&crd_yaml()).expect("the generated CRD is YAML");
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut out = BTreeMap::new();
    for top in ["spec", "status"] {
        walk(top, &root["properties"][top], &mut out);
    }
    out
}

/// Field rows of a Markdown document: path → the whole row (for every time it occurs).
fn documented_rows(markdown: &str) -> BTreeMap<String, Vec<String>> {
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in markdown.lines() {
        let Some(rest) = line.trim_start().strip_prefix('|') else {
            continue;
        };
        let first = rest.split('|').next().unwrap_or("").trim();
        let Some(path) = first
            .strip_prefix('`')
            .and_then(|p| p.strip_suffix('`'))
            .filter(|p| !p.contains('`'))
        else {
            continue;
        };
        if path.starts_with("spec.") || path.starts_with("status.") {
            rows.entry(path.to_owned())
                .or_default()
                .push(line.to_owned());
        }
    }
    rows
}

/// What is wrong with `markdown` as a reference of `schema`; empty when it matches.
fn drift(schema: &BTreeMap<String, Value>, markdown: &str) -> Vec<String> {
    let rows = documented_rows(markdown);
    let mut problems = Vec::new();
    let missing: Vec<&String> = schema.keys().filter(|p| !rows.contains_key(*p)).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{API_DOC} does not document these CRD fields; add a table row for each whose first cell is the path in backticks (| `PATH` | type | default | rules |): {}",
            join(missing.iter().map(|p| p.as_str()))
        ));
    }
    let extra: Vec<&String> = rows.keys().filter(|p| !schema.contains_key(*p)).collect();
    if !extra.is_empty() {
        problems.push(format!(
            "{API_DOC} documents fields the CRD schema does not have; remove or correct these rows: {}",
            join(extra.iter().map(|p| p.as_str()))
        ));
    }
    let twice: Vec<&String> = rows
        .iter()
        .filter(|(_, r)| r.len() > 1)
        .map(|(p, _)| p)
        .collect();
    if !twice.is_empty() {
        problems.push(format!(
            "{API_DOC} documents these fields in more than one row; keep one row each: {}",
            join(twice.iter().map(|p| p.as_str()))
        ));
    }
    for (path, prop) in schema {
        let (Some(values), Some(row)) = (
            prop.get("enum").and_then(Value::as_array),
            rows.get(path).and_then(|r| r.first()),
        ) else {
            continue;
        };
        let absent: Vec<&str> = values
            .iter()
            .filter_map(Value::as_str)
            .filter(|v| !row.contains(&format!("`{v}`")))
            .collect();
        if !absent.is_empty() {
            problems.push(format!(
                "{API_DOC}: the row of `{path}` does not list the allowed values {}; add them in backticks",
                join(absent.into_iter())
            ));
        }
    }
    problems
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn api_reference_documents_exactly_the_crd_fields() {
    let problems = drift(&schema_paths(), &read_repo_file(API_DOC));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checker itself: a reference that lacks a field, invents one, repeats one or omits an enum
/// value is reported, with what to do.
#[test]
fn drift_check_reports_missing_extra_repeated_and_enum_problems() {
    let schema = schema_paths();
    let doc = read_repo_file(API_DOC);

    let without_zone_name: String = doc
        .lines()
        .filter(|l| !l.trim_start().starts_with("| `spec.zones[].name`"))
        .map(|l| format!("{l}\n"))
        .collect();
    let problems = drift(&schema, &without_zone_name);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("does not document") && p.contains("`spec.zones[].name`")),
        "{problems:?}"
    );

    let invented = format!("{doc}\n| `spec.zones[].weight` | integer | – | – |\n");
    let problems = drift(&schema, &invented);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("does not have") && p.contains("`spec.zones[].weight`")),
        "{problems:?}"
    );

    let repeated = format!("{doc}\n| `spec.retain` | bool | false | again |\n");
    let problems = drift(&schema, &repeated);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("more than one row") && p.contains("`spec.retain`")),
        "{problems:?}"
    );

    let no_maintenance: String = doc
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("| `spec.zones[].trafficMode`") {
                l.replace("`maintenance`", "maintenance")
            } else {
                l.to_owned()
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let problems = drift(&schema, &no_maintenance);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`spec.zones[].trafficMode`") && p.contains("`maintenance`")),
        "{problems:?}"
    );

    // Paths in prose or in a non-first column are not field rows.
    let rows =
        documented_rows("see `spec.paused`\n| x | `spec.retain` |\n| `spec.paused` | bool |\n");
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["spec.paused"]);
}

fn doc_files() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dir = repo_root().join("docs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("docs/ exists")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    for name in names {
        let relative = format!("docs/{name}");
        let text = read_repo_file(&relative);
        out.push((relative, text));
    }
    out.push(("README.md".to_owned(), read_repo_file("README.md")));
    out
}

/// `yaml` fenced blocks of a Markdown text, each split into its `---` documents.
fn yaml_documents(markdown: &str) -> Vec<String> {
    let mut docs = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match current.as_mut() {
            None if trimmed.starts_with("```yaml") => current = Some(String::new()),
            None => {}
            Some(block) if trimmed.starts_with("```") => {
                for doc in block.split("\n---\n") {
                    docs.push(doc.to_owned());
                }
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    docs
}

/// Every complete VMDistributed manifest shown in the docs is accepted by the typed API as written.
#[test]
fn manifests_in_the_docs_decode_strictly() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for (file, text) in doc_files() {
        for doc in yaml_documents(&text) {
            if !doc.contains("kind: VMDistributed") || !doc.contains("apiVersion:") {
                continue;
            }
            let value: Value = match serde_saphyr::from_str(&doc) {
                Ok(v) => v,
                Err(err) => {
                    problems.push(format!("{file}: a yaml block does not parse: {err}"));
                    continue;
                }
            };
            if let Err(err) = strict::<VMDistributed>(&value) {
                problems.push(format!(
                    "{file}: a VMDistributed example does not decode: {err}"
                ));
            }
            checked += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 0, "{API_DOC} shows at least one full manifest");
}

/// Files the docs point at exist (`examples/*.yaml`, `docs/*.md`, `charts/**/*.yaml`).
#[test]
fn files_named_in_the_docs_exist() {
    let mut missing = BTreeSet::new();
    for (file, text) in doc_files() {
        for prefix in ["examples/", "docs/", "charts/"] {
            for (at, _) in text.match_indices(prefix) {
                // Only a path at a word start: `charts/x/docs/` is not ours.
                let before = text[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '/' || c == '-' || c == '_') {
                    continue;
                }
                let tail: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'))
                    .collect();
                let tail = tail.trim_end_matches('.');
                if !(tail.ends_with(".yaml") || tail.ends_with(".md")) {
                    continue;
                }
                if !repo_root().join(tail).is_file() {
                    missing.insert(format!("{file} → {tail}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the docs name files that do not exist: {missing:?}"
    );
}

/// `console` blocks of `docs/cli.md` that run `check` or `render` on a file under `examples/`:
/// (the command line, the file, the lines shown as its output).
fn cli_examples(markdown: &str) -> Vec<(String, String, Vec<String>)> {
    let mut found = Vec::new();
    let mut in_console = false;
    let mut current: Option<(String, String, Vec<String>)> = None;
    for line in markdown.lines() {
        if !in_console {
            in_console = line.trim_start().starts_with("```console");
            continue;
        }
        let is_end = line.trim_start().starts_with("```");
        if is_end || line.starts_with("$ ") {
            found.extend(current.take());
        }
        if is_end {
            in_console = false;
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            let words: Vec<&str> = command.split_whitespace().collect();
            if let [_, _, "-f", file] = words.as_slice()
                && file.starts_with("examples/")
            {
                current = Some((command.to_owned(), (*file).to_owned(), Vec::new()));
            }
        } else if let Some((_, _, lines)) = current.as_mut()
            && line.trim() != "..."
        {
            lines.push(line.to_owned());
        }
    }
    found
}

/// The example output in `docs/cli.md` is what the CLI logic prints, in the same order (a line
/// `...` stands for lines left out, `text...` for a line starting with `text`).
#[test]
fn cli_examples_match_the_real_output() {
    let doc = read_repo_file("docs/cli.md");
    let examples = cli_examples(&doc);
    assert!(
        examples.len() >= 2,
        "docs/cli.md shows `check` and `render` on an example file"
    );
    for (command, file, shown) in examples {
        let input = read_repo_file(&file);
        let output = if command.starts_with("vmdistributed-webhook check") {
            shared::offline::check::check_documents(&input)
        } else if command.starts_with("vmdistributed-controller render") {
            shared::offline::render::render_documents(&input)
        } else {
            panic!("docs/cli.md: unknown command `{command}`");
        };
        let printed = format!("{}{}", output.stdout, output.stderr);
        let mut actual = printed.lines();
        for line in &shown {
            // `text...` stands for a line that starts with `text` (hashes that change with
            // every rendering change).
            let matches = |a: &str| match line.strip_suffix("...") {
                Some(prefix) => a.starts_with(prefix),
                None => a == line,
            };
            assert!(
                actual.any(matches),
                "docs/cli.md, `{command}`: the line {line:?} is not in the real output (or not in \
                 this order); update the example from the command's output:\n{printed}"
            );
        }
    }
}

/// The registry in a binary's `metrics.rs` whose names keep no prefix (the VictoriaMetrics
/// operator's own metric names, which users' alerts already use).
const UNPREFIXED_REGISTRY: &str = "unprefixed";

/// Metric names a binary registers, read from its `metrics.rs`: the `Registry::with_prefix`
/// value joined with every name passed to `registry.register(`, and the names passed to
/// `unprefixed.register(` as they are.
fn registered_metrics(source_path: &str) -> BTreeSet<String> {
    let source = read_repo_file(source_path);
    let first_literal = |text: &str| -> Option<String> {
        let start = text.find('"')? + 1;
        let len = text[start..].find('"')?;
        Some(text[start..start + len].to_owned())
    };
    let prefix = source
        .split("Registry::with_prefix(")
        .nth(1)
        .and_then(first_literal)
        .unwrap_or_else(|| panic!("{source_path}: no Registry::with_prefix(\"...\")"));
    let pieces: Vec<&str> = source.split(".register(").collect();
    pieces
        .windows(2)
        .filter_map(|pair| {
            let name = first_literal(pair[1])?;
            let receiver = pair[0]
                .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default();
            Some(if receiver == UNPREFIXED_REGISTRY {
                name
            } else {
                format!("{prefix}_{name}")
            })
        })
        .collect()
}

/// `docs/operations.md` lists exactly the metrics both binaries register (counters with the
/// `_total` suffix the exposition adds).
#[test]
fn operations_lists_the_registered_metrics() {
    let doc = read_repo_file("docs/operations.md");
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|line| {
            let first = line
                .trim_start()
                .strip_prefix('|')?
                .split('|')
                .next()?
                .trim();
            let name = first.strip_prefix('`')?.strip_suffix('`')?;
            (name.starts_with("vmdistributed_") || name.starts_with("operator_"))
                .then(|| name.to_owned())
        })
        .collect();
    let mut problems = Vec::new();
    for source in ["webhook/src/metrics.rs", "controller/src/metrics.rs"] {
        let registered = registered_metrics(source);
        assert!(!registered.is_empty(), "{source} registers no metric");
        for name in &registered {
            if !documented.contains(name) && !documented.contains(&format!("{name}_total")) {
                problems.push(format!(
                    "{source} registers `{name}`; add a row for it (with `_total` if it is a counter) to docs/operations.md"
                ));
            }
        }
    }
    let all: BTreeSet<String> = ["webhook/src/metrics.rs", "controller/src/metrics.rs"]
        .into_iter()
        .flat_map(registered_metrics)
        .collect();
    for name in &documented {
        let base = name.strip_suffix("_total").unwrap_or(name);
        if !all.contains(name) && !all.contains(base) {
            problems.push(format!(
                "docs/operations.md documents `{name}`, which no binary registers; remove or rename the row"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
