//! How commands print: `-o text|json|yaml` (text for people, the others for
//! machines) and the aligned tables the text is made of.

use std::fmt::Write;

use serde::Serialize;

/// Output formats: text for people, JSON and YAML for machines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// `value` in `format`: `text` writes it for people, JSON is pretty-printed; every
/// document ends with a newline.
pub fn formatted<T: Serialize>(
    format: Output,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<String> {
    Ok(match format {
        Output::Text => text(value),
        Output::Json => serde_json::to_string_pretty(value)? + "\n",
        Output::Yaml => serde_saphyr::to_string(value)?,
    })
}

/// Prints `value` on stdout in `format`; see [`formatted`].
pub fn emit<T: Serialize>(
    format: Output,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    print!("{}", formatted(format, value, text)?);
    Ok(())
}

/// Rows under a heading, columns padded to their widest cell; numbers right-aligned.
pub fn table(out: &mut String, heading: &str, header: &[&str], rows: &[Vec<String>]) {
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric = |c: usize| {
        rows.iter()
            .all(|r| r[c].chars().next().is_some_and(|ch| ch.is_ascii_digit()))
    };
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if numeric(c) {
                    format!("{cell:>w$}", w = widths[c])
                } else {
                    format!("{cell:<w$}", w = widths[c])
                }
            })
            .collect();
        format!("  {}", padded.join("  ").trim_end())
    };
    let _ = writeln!(out, "{heading}");
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
    out.push('\n');
}

/// `1 problem`, `2 problems`: a count with its noun, singular or plural.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_formats_end_with_a_newline_and_text_is_as_written() {
        let value = serde_json::json!({"a": 1});
        let text = |_: &serde_json::Value| "people\n".to_owned();
        assert_eq!(formatted(Output::Text, &value, text).unwrap(), "people\n");
        assert_eq!(
            formatted(Output::Json, &value, text).unwrap(),
            "{\n  \"a\": 1\n}\n"
        );
        assert!(
            formatted(Output::Yaml, &value, text)
                .unwrap()
                .ends_with('\n')
        );
    }
}
