//! The workload's identity: uid, gid, supplementary groups, home and name, from the pod's
//! settings and the rootfs's own `/etc/passwd` and `/etc/group` (pure parsers; the files are read
//! after `chroot`, so a user the workload added with `useradd` is honoured).

use sc_api::exec_config::ExecConfig;

use crate::error::Error;

/// One line of `/etc/passwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One line of `/etc/group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Parses `/etc/passwd`; lines that are not `name:password:uid:gid:gecos:home:shell` (comments,
/// NIS `+` entries, garbage) are skipped, as glibc does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 7 || fields[0].is_empty() || fields[0].starts_with(['#', '+', '-']) {
                return None;
            }
            Some(PasswdEntry {
                name: fields[0].to_string(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
                home: fields[5].to_string(),
            })
        })
        .collect()
}

/// Parses `/etc/group` (`name:password:gid:member,member`), skipping malformed lines.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0].is_empty() || fields[0].starts_with(['#', '+', '-']) {
                return None;
            }
            Some(GroupEntry {
                name: fields[0].to_string(),
                gid: fields[2].parse().ok()?,
                members: fields[3].split(',').map(str::trim).filter(|member| !member.is_empty()).map(str::to_string).collect(),
            })
        })
        .collect()
}

/// Who the workload runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, the primary group first (as `id` lists them).
    pub groups: Vec<u32>,
    /// `HOME` when the pod does not set it: the passwd home, else `/` (as runc does).
    pub home: String,
    /// The passwd name of `uid`, when it has one.
    pub user_name: Option<String>,
}

/// Resolves the workload's identity the way a container runtime does for an image: `runAsUser`
/// (default root), `runAsGroup` or the user's passwd group (or the uid's number when unlisted),
/// then the groups listing the user plus `supplementalGroups`. Refuses uid 0 under
/// `runAsNonRoot`.
pub fn resolve_identity(config: &ExecConfig, passwd: &[PasswdEntry], groups: &[GroupEntry]) -> Result<Identity, Error> {
    let uid = config.run_as_user.unwrap_or(0);
    if uid == 0 && config.run_as_non_root {
        return Err(Error::RunAsNonRoot);
    }
    let account = passwd.iter().find(|entry| entry.uid == uid);
    let gid = config.run_as_group.or(account.map(|entry| entry.gid)).unwrap_or(uid);
    let mut supplementary = vec![gid];
    if let Some(account) = account {
        for group in groups.iter().filter(|group| group.members.contains(&account.name)) {
            supplementary.push(group.gid);
        }
    }
    supplementary.extend(&config.supplemental_groups);
    let mut seen = std::collections::HashSet::new();
    supplementary.retain(|gid| seen.insert(*gid));
    Ok(Identity {
        uid,
        gid,
        groups: supplementary,
        home: account.map_or_else(|| "/".to_string(), |entry| entry.home.clone()),
        user_name: account.map(|entry| entry.name.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
broken line
alice:x:1000:1000:Alice:/home/alice:/bin/sh
+nisuser::::::
bob:x:1001:100::/home/bob:/bin/false
";
    const GROUP: &str = "\
root:x:0:
wheel:x:10:alice, bob
alice:x:1000:
users:x:100:bob
dev:x:2000:carol,alice
bad:x:notanumber:alice
";

    fn config(json: &str) -> ExecConfig {
        serde_json::from_str(json).expect("test config")
    }

    #[test]
    fn passwd_and_group_parse_and_skip_garbage() {
        let passwd = parse_passwd(PASSWD);
        assert_eq!(passwd.len(), 3);
        assert_eq!(passwd[1], PasswdEntry { name: "alice".into(), uid: 1000, gid: 1000, home: "/home/alice".into() });
        let groups = parse_group(GROUP);
        assert_eq!(groups.len(), 5);
        assert_eq!(groups[1].members, vec!["alice".to_string(), "bob".to_string()]);
    }

    #[test]
    fn a_listed_user_gets_its_groups_home_and_name() {
        let identity =
            resolve_identity(&config(r#"{"runAsUser":1000,"supplementalGroups":[3000,10]}"#), &parse_passwd(PASSWD), &parse_group(GROUP))
                .expect("resolves");
        assert_eq!(
            identity,
            Identity {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 10, 2000, 3000],
                home: "/home/alice".into(),
                user_name: Some("alice".into()),
            }
        );
    }

    #[test]
    fn run_as_group_overrides_the_passwd_group() {
        let identity = resolve_identity(&config(r#"{"runAsUser":1001,"runAsGroup":5}"#), &parse_passwd(PASSWD), &parse_group(GROUP))
            .expect("resolves");
        assert_eq!((identity.gid, identity.groups), (5, vec![5, 10, 100]));
    }

    #[test]
    fn an_unlisted_uid_uses_its_number_as_group_and_slash_as_home() {
        let identity = resolve_identity(&config(r#"{"runAsUser":4242}"#), &parse_passwd(PASSWD), &[]).expect("resolves");
        assert_eq!(identity, Identity { uid: 4242, gid: 4242, groups: vec![4242], home: "/".into(), user_name: None });
    }

    #[test]
    fn the_default_is_root() {
        let identity = resolve_identity(&config("{}"), &parse_passwd(PASSWD), &parse_group(GROUP)).expect("root");
        assert_eq!((identity.uid, identity.gid, identity.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn run_as_non_root_refuses_uid_zero_explicit_or_default() {
        for json in [r#"{"runAsNonRoot":true}"#, r#"{"runAsNonRoot":true,"runAsUser":0}"#] {
            let error = resolve_identity(&config(json), &[], &[]).expect_err("root refused");
            assert_eq!(error.exit_code(), 78);
            assert!(error.to_string().contains("runAsNonRoot"), "{error}");
        }
        assert!(resolve_identity(&config(r#"{"runAsNonRoot":true,"runAsUser":1}"#), &[], &[]).is_ok());
    }
}
