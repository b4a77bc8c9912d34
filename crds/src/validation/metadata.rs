//! The rules for an object's name that the API server applies and no CRD schema states,
//! and the tighter one the JupyterEnvironment's children need.

use super::{Problem, Problems};

/// The longest name of any object: a DNS-1123 subdomain.
pub const MAX_NAME: usize = 253;
/// The longest JupyterEnvironment name: its StatefulSet's Pods carry a
/// `controller-revision-hash` label of the name, a dash and a ten-character hash, and a
/// label value holds at most 63 characters.
pub const MAX_JUPYTER_NAME: usize = 52;

/// Checks `metadata.name` of an object of `kind`: present, a DNS-1123 subdomain (what the
/// API server requires of every custom resource) and, for a JupyterEnvironment, whose name
/// is also its Service's and StatefulSet's, a DNS-1035 label of at most
/// [`MAX_JUPYTER_NAME`] characters.
pub fn validate_object_name(kind: &str, name: Option<&str>) -> Result<(), Problems> {
    let path = "metadata.name";
    let Some(name) = name else {
        return Err(Problems(vec![Problem::new(
            path,
            "missing; valid: a name of lowercase letters, digits, '-' and '.'",
        )]));
    };
    let mut problems = Vec::new();
    if name.chars().count() > MAX_NAME {
        problems.push(Problem::new(
            path,
            format!(
                "{} characters; valid: at most {MAX_NAME}",
                name.chars().count()
            ),
        ));
    } else if !is_dns_subdomain(name) {
        problems.push(Problem::new(
            path,
            format!(
                "{name:?} is not a DNS-1123 subdomain; valid: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
            ),
        ));
    } else if kind == "JupyterEnvironment" && !is_dns_1035_label(name, MAX_JUPYTER_NAME) {
        problems.push(Problem::new(
            path,
            format!(
                "{name:?} cannot name the environment's Service and StatefulSet; valid: at most {MAX_JUPYTER_NAME} lowercase letters, digits and '-', starting with a letter and ending with a letter or digit (a Service name holds at most 63)"
            ),
        ));
    }
    Problems(problems).into_result()
}

fn is_name_part(part: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !part.is_empty()
        && part.len() <= 63
        && part.starts_with(alnum)
        && part.ends_with(alnum)
        && part
            .chars()
            .all(|c| alnum(c) || c == '-' || c == '_' || c == '.')
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters.
pub(crate) fn is_label_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name_part(name),
        None => is_name_part(key),
    }
}

/// A label value: empty, or at most 63 letters, digits, '-', '_' and '.', starting and
/// ending with a letter or digit.
pub(crate) fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_name_part(value)
}

/// What a label key and value must be, for messages.
pub(crate) const LABEL_RULES: &str = "valid: keys [prefix/]name and values of at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit";

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|part| {
            // The API server's rule: no length limit per part, unlike a DNS name.
            !part.is_empty()
                && part.chars().all(is_label_char)
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn is_dns_1035_label(name: &str, max: usize) -> bool {
    name.len() <= max
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(is_label_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_like_and_invisible_names_are_refused() {
        for name in [
            "../../etc",
            "a/b",
            "bad\u{200b}input",
            "bad\u{202e}input",
            "A",
            "",
        ] {
            let err = validate_object_name("Factory", Some(name)).expect_err(name);
            assert_eq!(err.0[0].path, "metadata.name");
        }
        validate_object_name("Factory", Some("it4lia.example")).expect("a subdomain");
        let long = "a".repeat(300);
        let err = validate_object_name("Workspace", Some(&long)).expect_err("300 characters");
        assert!(err.0[0].message.contains("at most 253"), "{err}");
    }

    #[test]
    fn a_notebook_name_must_fit_its_children() {
        validate_object_name("JupyterEnvironment", Some(&"n".repeat(52))).expect("52 fit");
        for name in ["n".repeat(53), "1-notebook".into(), "a.b".into()] {
            let err = validate_object_name("JupyterEnvironment", Some(&name)).expect_err(&name);
            assert!(err.0[0].message.contains("at most 52"), "{err}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        assert!(is_label_key("fabbrica.io/test-bad-input") && is_label_key("role"));
        assert!(is_label_value("") && is_label_value("true"));
        assert!(!is_label_key("a/b/c") && !is_label_key("/x") && !is_label_key(""));
        assert!(!is_label_value("../../etc/passwd") && !is_label_value(&"v".repeat(64)));
    }
}
