//! Parsers for the values users type on the command line. Each one rejects what the API server
//! would reject later, so a typo fails before anything is sent, with a message that says what
//! the value must look like.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use sc_api::storage::{ClaimRetention, StorageSpec};

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

/// Checks the size of `--storage` with the rule the operator applies to `spec.storage.size`
/// ([`sc_api::storage::resolve`]), keeping it as written, so a bad size is refused in the
/// operator's words before anything is sent.
pub fn parse_storage_size(raw: &str) -> Result<String, String> {
    let storage = StorageSpec { size: Quantity(raw.to_owned()), ..StorageSpec::default() };
    sc_api::storage::resolve(&storage).map(|_| raw.to_owned()).map_err(|problems| problems.join("; "))
}

/// The storage flags of `create` as typed: `--storage`, `--storage-class`, `--keep-storage` and
/// `--size` (which only a node-local root filesystem has).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageFlags<'a> {
    pub size: Option<&'a str>,
    pub class: Option<&'a str>,
    pub keep: bool,
    pub rootfs_size: Option<&'a str>,
}

/// `spec.storage` as the flags ask for it (None: node-local), or why they cannot go together.
/// The result passes [`sc_api::storage::resolve`], so the operator accepts what is sent.
pub fn storage_from_flags(flags: StorageFlags<'_>) -> Result<Option<StorageSpec>, String> {
    let Some(size) = flags.size else {
        let mut problems = Vec::new();
        if flags.class.is_some() {
            problems.push(
                "--storage-class needs --storage: it names the StorageClass of the PersistentVolumeClaim that --storage \
                 creates, and without --storage the root filesystem is on its node; add --storage SIZE (e.g. --storage 20Gi), \
                 or drop --storage-class",
            );
        }
        if flags.keep {
            problems.push(
                "--keep-storage needs --storage: it keeps the PersistentVolumeClaim that --storage creates when the \
                 StoppableContainer is deleted, and without --storage there is no claim to keep; add --storage SIZE \
                 (e.g. --storage 20Gi), or drop --keep-storage",
            );
        }
        return if problems.is_empty() { Ok(None) } else { Err(problems.join("; ")) };
    };
    if flags.rootfs_size.is_some() {
        return Err("--size cannot be used with --storage: --size limits a root filesystem on its node, and on a \
                    PersistentVolumeClaim the claim's size is the limit; drop --size and give the size you want to --storage"
            .to_owned());
    }
    let storage = StorageSpec {
        size: Quantity(size.to_owned()),
        storage_class_name: flags.class.map(str::to_owned),
        access_modes: Vec::new(),
        when_deleted: Some(if flags.keep { ClaimRetention::Retain } else { ClaimRetention::Delete }),
    };
    sc_api::storage::resolve(&storage).map(|_| Some(storage)).map_err(|problems| problems.join("; "))
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
    fn storage_sizes_are_refused_in_the_operators_words() {
        assert_eq!(parse_storage_size("20Gi"), Ok("20Gi".to_owned()));
        assert_eq!(
            parse_storage_size("20GB"),
            Err(r#"spec.storage.size: the rootfs size "20GB" is not a Kubernetes quantity (unknown suffix "GB"; use Ki, Mi, Gi, Ti, Pi, Ei, or k, M, G, T, P, E); write it like 10Gi, 512Mi or 20G"#.to_owned())
        );
        assert!(
            parse_storage_size("1Mi")
                .expect_err("too small")
                .starts_with(r#"spec.storage.size: the rootfs size "1Mi" is 1048576 bytes, below the minimum of 64Mi"#)
        );
        // The same words as the operator's SpecValid message, because they are its words.
        let operator = sc_api::storage::resolve(&StorageSpec { size: Quantity("0".into()), ..StorageSpec::default() });
        assert_eq!(parse_storage_size("0"), operator.map(|_| String::new()).map_err(|problems| problems.join("; ")));
    }

    #[test]
    fn without_storage_flags_the_root_filesystem_stays_on_its_node() {
        assert_eq!(storage_from_flags(StorageFlags::default()), Ok(None));
        assert_eq!(storage_from_flags(StorageFlags { rootfs_size: Some("20Gi"), ..StorageFlags::default() }), Ok(None));
    }

    #[test]
    fn storage_flags_make_a_claim_deleted_with_the_container_unless_kept() {
        let deleted = storage_from_flags(StorageFlags { size: Some("20Gi"), ..StorageFlags::default() }).expect("valid");
        assert_eq!(
            deleted,
            Some(StorageSpec {
                size: Quantity("20Gi".into()),
                storage_class_name: None,
                access_modes: vec![],
                when_deleted: Some(ClaimRetention::Delete)
            })
        );
        let kept = storage_from_flags(StorageFlags { size: Some("5Gi"), class: Some("fast-ssd"), keep: true, rootfs_size: None })
            .expect("valid")
            .expect("storage");
        assert_eq!(kept.storage_class_name.as_deref(), Some("fast-ssd"));
        assert_eq!(kept.when_deleted, Some(ClaimRetention::Retain));
    }

    #[test]
    fn storage_flags_that_do_not_go_together_are_refused_with_what_to_do() {
        let class_alone = StorageFlags { class: Some("fast"), ..StorageFlags::default() };
        assert_eq!(
            storage_from_flags(class_alone),
            Err("--storage-class needs --storage: it names the StorageClass of the PersistentVolumeClaim that --storage creates, \
                 and without --storage the root filesystem is on its node; add --storage SIZE (e.g. --storage 20Gi), or drop --storage-class"
                .to_owned())
        );
        let keep_alone = StorageFlags { keep: true, ..StorageFlags::default() };
        assert_eq!(
            storage_from_flags(keep_alone),
            Err("--keep-storage needs --storage: it keeps the PersistentVolumeClaim that --storage creates when the StoppableContainer \
                 is deleted, and without --storage there is no claim to keep; add --storage SIZE (e.g. --storage 20Gi), or drop --keep-storage"
                .to_owned())
        );
        let both_alone =
            storage_from_flags(StorageFlags { class: Some("fast"), keep: true, ..StorageFlags::default() }).expect_err("refused");
        assert!(
            both_alone.starts_with("--storage-class needs --storage") && both_alone.contains("; --keep-storage needs --storage"),
            "{both_alone}"
        );
        let with_rootfs_size = StorageFlags { size: Some("20Gi"), rootfs_size: Some("10Gi"), ..StorageFlags::default() };
        assert_eq!(
            storage_from_flags(with_rootfs_size),
            Err("--size cannot be used with --storage: --size limits a root filesystem on its node, and on a PersistentVolumeClaim \
                 the claim's size is the limit; drop --size and give the size you want to --storage"
                .to_owned())
        );
        let bad_class = StorageFlags { size: Some("20Gi"), class: Some("Fast_Disks"), ..StorageFlags::default() };
        assert_eq!(
            storage_from_flags(bad_class),
            Err(r#"spec.storage.storageClassName "Fast_Disks": must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"#.to_owned())
        );
    }

    #[test]
    fn namespaces_are_dns1123_labels() {
        assert_eq!(parse_namespace("kube-system"), Ok("kube-system".to_owned()));
        assert!(parse_namespace("Not_Ok").is_err());
        assert!(parse_namespace(&"n".repeat(64)).is_err());
    }
}
