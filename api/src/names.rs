//! The naming rules every component applies the same way: the operator (a `SpecValid` message),
//! `kubectl sc` (before anything is sent) and the node plugin (defence in depth). One place, so
//! they can never disagree again (an SC named `my.box` used to be accepted by the operator and
//! refused by the plugin forever).

use crate::consts::MAX_SC_NAME_LEN;

/// Whether `value` is an RFC 1123 label: 1 to 63 of `[a-z0-9-]`, starting and ending with a
/// letter or digit.
pub fn is_dns_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    let is_alnum = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= 63 && is_alnum(first) && is_alnum(last) && bytes.iter().all(|byte| is_alnum(byte) || *byte == b'-')
        }
        _ => false,
    }
}

/// Longest object name (a DNS-1123 subdomain).
pub const MAX_OBJECT_NAME_LEN: usize = 253;

/// Whether `value` is a DNS-1123 subdomain (what Kubernetes requires of node, StorageClass and
/// most object names): at most 253 characters, dot-separated DNS labels.
pub fn is_dns_subdomain(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_OBJECT_NAME_LEN && value.split('.').all(is_dns_label)
}

/// Checks an RFC 1123 label of at most `max_len` characters; the error says what it must look like.
pub fn check_dns_label(value: &str, max_len: usize) -> Result<(), String> {
    if value.is_empty() {
        Err("missing".to_owned())
    } else if value.len() > max_len || !is_dns_label(value) {
        Err(format!("{value:?} is not a DNS label (at most {max_len} of [a-z0-9-], starting and ending alphanumeric)"))
    } else {
        Ok(())
    }
}

/// Checks a StoppableContainer name. It is a path component of the node's data root, a label
/// value, the consumer pod's name (and so its hostname) and, with `-provider`, the provider pod's
/// name: a DNS label of at most [`MAX_SC_NAME_LEN`] characters (no dots) fits all of them.
pub fn check_sc_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name must not be empty".to_owned());
    }
    if name.len() > MAX_SC_NAME_LEN {
        return Err(format!(
            "{name:?} is {} characters long; a StoppableContainer name may have at most {MAX_SC_NAME_LEN} (its provider pod is \
             named <name>-provider, which must fit in 63); recreate it with a shorter name",
            name.len()
        ));
    }
    if !is_dns_label(name) {
        return Err(format!(
            "{name:?} is not a valid name for a StoppableContainer: use lowercase letters, digits and '-', starting and ending with a \
             letter or digit (a DNS-1123 label such as \"my-dev-box\"; dots are not allowed); recreate it with such a name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_lowercase_alphanumerics_and_dashes() {
        for good in ["a", "dev", "my-dev-box", "0a", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "my.box", "a_b", "a/b", "..", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn every_rejected_sc_name_says_why_and_what_to_do() {
        let cases = [
            ("", "must not be empty"),
            ("my.box", "dots are not allowed"),
            ("Dev", "lowercase letters"),
            ("-dev", "starting and ending with a letter or digit"),
            (&"a".repeat(MAX_SC_NAME_LEN + 1), "at most 54"),
        ];
        for (name, expected) in cases {
            let message = check_sc_name(name).expect_err(name);
            assert!(message.contains(expected), "{name:?}: {message}");
        }
        assert!(check_sc_name(&"a".repeat(MAX_SC_NAME_LEN)).is_ok());
        assert_eq!(
            check_dns_label("Team_A", 63).expect_err("bad"),
            "\"Team_A\" is not a DNS label (at most 63 of [a-z0-9-], starting and ending alphanumeric)"
        );
    }
}
