//! Parsers for the values users type on the command line. Each one rejects what the API server
//! would reject later, so a typo fails before anything is sent, with a message that says what
//! the value must look like.

/// An environment variable given as `KEY=VALUE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVarArg {
    pub name: String,
    pub value: String,
}

/// A container port given as `port[:name]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortArg {
    pub number: u16,
    pub name: Option<String>,
}

/// Checks a StoppableContainer name with the rule the operator and the node plugin apply
/// ([`sc_api::names::check_sc_name`]).
pub fn parse_sc_name(raw: &str) -> Result<String, String> {
    sc_api::names::check_sc_name(raw).map(|()| raw.to_owned())
}

/// Checks a namespace name (a DNS-1123 label of at most 63 characters).
pub fn parse_namespace(raw: &str) -> Result<String, String> {
    if sc_api::names::is_dns_label(raw) {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "{raw:?} is not a valid namespace: use at most 63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit"
        ))
    }
}

/// Parses `KEY=VALUE`. The key follows the rule Kubernetes 1.20+ enforces for `env[].name`
/// (letters, digits, `_`, `-`, `.`, not starting with a digit); the value may be empty.
pub fn parse_env_var(raw: &str) -> Result<EnvVarArg, String> {
    let Some((name, value)) = raw.split_once('=') else {
        return Err(format!("{raw:?} has no '=': expected KEY=VALUE, e.g. -e GREETING=hello"));
    };
    if name.is_empty() {
        return Err(format!("{raw:?} has an empty variable name: expected KEY=VALUE"));
    }
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let starts_with_digit = name.starts_with(|c: char| c.is_ascii_digit());
    if starts_with_digit || !name.chars().all(valid_char) {
        return Err(format!(
            "{name:?} is not a valid environment variable name: use letters, digits, '_', '-' \
             or '.', not starting with a digit"
        ));
    }
    Ok(EnvVarArg { name: name.to_owned(), value: value.to_owned() })
}

/// Parses `port[:name]`: a port number 1-65535 and an optional IANA service name (what
/// Kubernetes requires of `ports[].name`).
pub fn parse_port(raw: &str) -> Result<PortArg, String> {
    let (number_text, name) = match raw.split_once(':') {
        Some((number, name)) => (number, Some(name)),
        None => (raw, None),
    };
    let number = number_text
        .parse::<u16>()
        .ok()
        .filter(|number| *number != 0)
        .ok_or_else(|| format!("{number_text:?} is not a port number: expected 1-65535, as port[:name] (e.g. 8080:http)"))?;
    if let Some(name) = name {
        validate_port_name(name)?;
    }
    Ok(PortArg { number, name: name.map(str::to_owned) })
}

fn validate_port_name(name: &str) -> Result<(), String> {
    let chars_ok = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let has_letter = name.chars().any(|c| c.is_ascii_lowercase());
    let hyphens_ok = !name.starts_with('-') && !name.ends_with('-') && !name.contains("--");
    if (1..=15).contains(&name.len()) && chars_ok && has_letter && hyphens_ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid port name: use 1-15 lowercase letters, digits and single \
             '-' (at least one letter, no '-' at either end), e.g. \"http\""
        ))
    }
}

/// Checks a root filesystem size (`--size`) with the parser the operator and the node plugin use
/// ([`sc_api::rootfs_size::parse_size`]), keeping it as written. The cluster's maximum is an
/// administrator's setting the plugin cannot see: the operator reports a size above it.
pub fn parse_rootfs_size(raw: &str) -> Result<String, String> {
    sc_api::rootfs_size::parse_size(raw).map(|_| raw.to_owned()).map_err(|error| error.to_string())
}

/// Checks a resource quantity such as `500m`, `1`, `1.5`, `256Mi`, `2G` or `1e3` (the
/// Kubernetes quantity grammar, without a sign: requests cannot be negative).
pub fn parse_quantity(raw: &str) -> Result<String, String> {
    let number_len = raw.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(raw.len());
    let (number, suffix) = raw.split_at(number_len);
    let number_ok = match number.split_once('.') {
        Some((whole, fraction)) => {
            !fraction.contains('.')
                && (!whole.is_empty() || !fraction.is_empty())
                && (whole.chars().chain(fraction.chars())).all(|c| c.is_ascii_digit())
        }
        None => !number.is_empty(),
    };
    if number_ok && is_quantity_suffix(suffix) {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "{raw:?} is not a resource quantity: expected a number with an optional suffix, \
             e.g. 500m or 2 (CPU), 256Mi or 1Gi (memory)"
        ))
    }
}

fn is_quantity_suffix(suffix: &str) -> bool {
    const SUFFIXES: [&str; 16] = ["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if SUFFIXES.contains(&suffix) {
        return true;
    }
    // Decimal exponent form: e.g. `1e3`, `5E-2`.
    let Some(exponent) = suffix.strip_prefix(['e', 'E']) else {
        return false;
    };
    let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use sc_api::consts::MAX_SC_NAME_LEN;

    use super::*;

    #[test]
    fn sc_names_follow_dns1123_and_the_length_limit() {
        assert_eq!(parse_sc_name("dev-box-1"), Ok("dev-box-1".to_owned()));
        assert!(parse_sc_name(&"a".repeat(MAX_SC_NAME_LEN)).is_ok());
        let too_long = parse_sc_name(&"a".repeat(MAX_SC_NAME_LEN + 1)).expect_err("is rejected");
        assert!(too_long.contains(&format!("at most {MAX_SC_NAME_LEN}")), "{too_long}");
        for bad in ["Bad_Name", "-lead", "trail-", "UPPER", "dot.ted", ""] {
            assert!(parse_sc_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn env_vars_need_a_valid_key_and_an_equals_sign() {
        assert_eq!(parse_env_var("A_B.c-d=x=y"), Ok(EnvVarArg { name: "A_B.c-d".into(), value: "x=y".into() }));
        assert_eq!(parse_env_var("EMPTY="), Ok(EnvVarArg { name: "EMPTY".into(), value: "".into() }));
        assert!(parse_env_var("FOO").expect_err("is rejected").contains("expected KEY=VALUE"));
        assert!(parse_env_var("=x").expect_err("is rejected").contains("empty variable name"));
        assert!(parse_env_var("1X=y").expect_err("is rejected").contains("not a valid environment variable name"));
        assert!(parse_env_var("A B=y").is_err());
    }

    #[test]
    fn ports_are_numbers_in_range_with_optional_iana_names() {
        assert_eq!(parse_port("8080"), Ok(PortArg { number: 8080, name: None }));
        assert_eq!(parse_port("22:ssh"), Ok(PortArg { number: 22, name: Some("ssh".into()) }));
        for bad in ["abc", "70000", "0", "-1", "", ":http"] {
            assert!(parse_port(bad).expect_err("is rejected").contains("is not a port number"), "{bad:?}");
        }
        for bad_name in ["80:HTTP", "80:", "80:123", "80:a--b", "80:-a", "80:sixteen-chars-xy"] {
            assert!(parse_port(bad_name).expect_err("is rejected").contains("not a valid port name"), "{bad_name:?}");
        }
    }

    #[test]
    fn quantities_follow_the_kubernetes_grammar() {
        for good in ["500m", "1", "1.5", ".5", "2.", "256Mi", "1Gi", "2G", "1e3", "5E-2", "100k"] {
            assert_eq!(parse_quantity(good), Ok(good.to_owned()), "{good:?}");
        }
        for bad in ["", "abc", "1.2.3", "-1", "1MB", "1 Gi", "Mi", ".", "1e", "1x"] {
            assert!(parse_quantity(bad).expect_err("is rejected").contains("not a resource quantity"), "{bad:?}");
        }
    }

    #[test]
    fn rootfs_sizes_are_kept_as_written_and_refused_as_the_operator_refuses_them() {
        for good in ["20Gi", "64Mi", "1.5Gi", "500G", "2e10"] {
            assert_eq!(parse_rootfs_size(good), Ok(good.to_owned()), "{good:?}");
        }
        let cases = [
            (
                "20GB",
                r#"the rootfs size "20GB" is not a Kubernetes quantity (unknown suffix "GB"; use Ki, Mi, Gi, Ti, Pi, Ei, or k, M, G, T, P, E); write it like 10Gi, 512Mi or 20G"#,
            ),
            (
                "1Mi",
                r#"the rootfs size "1Mi" is 1048576 bytes, below the minimum of 64Mi: the filesystem's journal and metadata and a usable upper layer need at least that"#,
            ),
            ("0", r#"the rootfs size "0" is not positive; give a size of at least 64Mi"#),
            ("", "the rootfs size is empty; give a Kubernetes quantity such as 10Gi"),
        ];
        for (bad, message) in cases {
            assert_eq!(parse_rootfs_size(bad), Err(message.to_owned()), "{bad:?}");
        }
    }

    #[test]
    fn namespaces_are_dns1123_labels() {
        assert_eq!(parse_namespace("kube-system"), Ok("kube-system".to_owned()));
        assert!(parse_namespace("Not_Ok").is_err());
        assert!(parse_namespace(&"n".repeat(64)).is_err());
    }
}
