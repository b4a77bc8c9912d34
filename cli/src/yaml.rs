//! Reading input files within stated bounds. A spec file is read whole, so its size is
//! capped before it is read; YAML is parsed with a budget, so an alias bomb, a document
//! nested thousands deep or a flood of nodes is refused with a sentence instead of
//! exhausting memory or the stack; and errors are worded for the person who wrote the
//! file (line and column, what is wrong, what is valid), not for a programmer.

use std::io::Read;
use std::path::Path;

use serde_json::Value;
use serde_saphyr::DuplicateKeyPolicy;
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{Error, SnippetMode, UserMessageFormatter};

/// The largest input file read, in bytes: a Gigafactory's blueprint is a few kilobytes and
/// a file of every object of a site a few megabytes.
pub const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;
/// Most values (mappings, sequences and scalars, aliases expanded) in one file.
pub const MAX_NODES: usize = 250_000;
/// Deepest nesting of mappings and sequences.
pub const MAX_DEPTH: usize = 64;
/// Most documents in one file.
pub const MAX_DOCUMENTS: usize = 1_024;
/// Most alias (`*name`) uses in one file.
pub const MAX_ALIASES: usize = 10_000;

/// Reads a file as UTF-8 text, refusing one larger than [`MAX_INPUT_BYTES`].
pub fn read_text(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|err| format!("cannot read: {err}"))?;
    let mut bytes = Vec::new();
    // `take` also bounds what is read from a pipe or a device, whose metadata says nothing.
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read: {err}"))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(format!(
            "the file is larger than {} MiB; valid: YAML or JSON of at most {} MiB",
            MAX_INPUT_BYTES / (1024 * 1024),
            MAX_INPUT_BYTES / (1024 * 1024)
        ));
    }
    String::from_utf8(bytes).map_err(|err| {
        format!(
            "not a text file: not valid UTF-8 at byte {}; valid: YAML or JSON in UTF-8",
            err.utf8_error().valid_up_to()
        )
    })
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: MAX_NODES,
            max_depth: MAX_DEPTH,
            max_documents: MAX_DOCUMENTS,
            max_aliases: MAX_ALIASES,
            max_total_scalar_bytes: MAX_INPUT_BYTES as usize,
        },
        duplicate_keys: DuplicateKeyPolicy::Error,
        with_snippet: false,
    }
}

/// Parses every document of a YAML (or JSON) text; comments-only documents are dropped.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let values: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, options()).map_err(|err| message(&err))?;
    Ok(values.into_iter().filter(|v| !v.is_null()).collect())
}

/// An error of the YAML reader as a person reads it: where, what, and what is valid.
pub fn message(err: &Error) -> String {
    let at = err
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| format!("line {}, column {}: ", l.line(), l.column()))
        .unwrap_or_default();
    if let Error::Budget { breach, .. } = err {
        return format!("{at}{}", budget(breach));
    }
    let mut text = err.render_with_options(serde_saphyr::render_options! {
        formatter: &UserMessageFormatter,
        snippets: SnippetMode::Off,
    });
    // The parser's own guard against deep flow nesting (`[[[[...`) speaks of recursion.
    if text.starts_with("recursion limit exceeded") {
        text = format!("{at}the input is nested too deep; valid: at most {MAX_DEPTH} levels");
    }
    if matches!(err, Error::DuplicateMappingKey { .. }) {
        text.push_str("; valid: each key once in a mapping");
    }
    text
}

fn budget(breach: &BudgetBreach) -> String {
    let limit = |what: &str, limit: usize| {
        format!("the input is too large or too complex: {what}; valid: at most {limit}")
    };
    match breach {
        BudgetBreach::Nodes { .. } => limit(
            "too many values once aliases are expanded (an alias bomb?)",
            MAX_NODES,
        ),
        BudgetBreach::Depth { .. } => limit("nested too deep", MAX_DEPTH),
        BudgetBreach::Documents { .. } => limit("too many documents", MAX_DOCUMENTS),
        BudgetBreach::Aliases { .. } | BudgetBreach::AliasAnchorRatio { .. } => {
            limit("too many aliases (an alias bomb?)", MAX_ALIASES)
        }
        BudgetBreach::ScalarBytes { .. } | BudgetBreach::InputBytes { .. } => limit(
            "too much text",
            usize::try_from(MAX_INPUT_BYTES).unwrap_or(usize::MAX),
        ),
        other => format!("the input is too large or too complex ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_key_is_told_to_the_user_with_its_line() {
        let err = documents("a: 1\nb: 2\na: 3\n").expect_err("a duplicate key");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("duplicate mapping key"), "{err}");
        assert!(err.contains("valid: each key once"), "{err}");
        assert!(!err.contains("Options"), "{err}");
    }

    #[test]
    fn an_alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = documents(&text).expect_err("a billion values");
        assert!(err.contains("too large or too complex"), "{err}");
    }

    #[test]
    fn comments_alone_are_no_document() {
        assert_eq!(
            documents("# nothing\n").expect("valid YAML"),
            Vec::<Value>::new()
        );
    }
}
