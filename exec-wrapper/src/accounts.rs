//! The workload's identity: uid, gid, supplementary groups and home, from the pod's settings, the
//! image's `User` and the rootfs's own `/etc/passwd` and `/etc/group`, following kubelet and
//! containerd's `oci.WithUser`, `WithUserID`, `WithUsername` and CRI `WithAdditionalGIDs` (all
//! pure; the files are read after `chroot` at each start, so a user the workload added with
//! `useradd` is honoured).

use sc_api::exec_config::ExecConfig;
use sc_api::process::{Account, ImageUser};

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
    /// Supplementary groups, the primary group first (containerd puts it there since 1.6.18).
    pub groups: Vec<u32>,
    /// `HOME` when the pod does not set it: the passwd home of `uid`, else `/` (as runc does).
    pub home: String,
}

/// The user the runtime is asked for, as kubelet asks it over CRI: `runAsUser` (container, then
/// pod), else only the *user* part of the image's `User` (kubelet splits `uid:gid` and
/// `name:group` and drops the group, kubernetes#61967, on containerd and CRI-O alike), with
/// `runAsGroup` as the group. `None`: nothing asked, so root.
pub fn requested_user(config: &ExecConfig, image_user: &str) -> Result<Option<ImageUser>, Error> {
    let user = config.run_as_user.map(Account::Id).or_else(|| ImageUser::parse(image_user).map(|image| image.user));
    let group = config.run_as_group.map(Account::Id);
    match (user, group) {
        (Some(user), group) => Ok(Some(ImageUser { user, group })),
        (None, None) => Ok(None),
        (None, Some(group)) => Err(Error::Account(format!(
            "user group \"{group}\" is specified without user (containerd refuses runAsGroup without a user, and so \
             does this); set runAsUser too, or give the image a USER"
        ))),
    }
}

fn user_named<'a>(name: &str, passwd: &'a [PasswdEntry]) -> Result<&'a PasswdEntry, Error> {
    passwd.iter().find(|entry| entry.name == name).ok_or_else(|| {
        Error::Account(format!(
            "no users found: the user {name:?} (the image's USER) is not in the rootfs's /etc/passwd; create it \
             in the container (useradd, it persists), or set runAsUser in the pod template"
        ))
    })
}

fn group_named(name: &str, groups: &[GroupEntry]) -> Result<u32, Error> {
    groups.iter().find(|entry| entry.name == name).map(|entry| entry.gid).ok_or_else(|| {
        Error::Account(format!(
            "no groups found: the group {name:?} is not in the rootfs's /etc/group; create it in the container \
             (groupadd, it persists), or set runAsGroup in the pod template"
        ))
    })
}

/// uid and gid as containerd's `oci.WithUser` computes them: a lone uid is looked up in
/// `/etc/passwd` for its group and gets gid 0 when unlisted (`WithUserID`); a lone name must be
/// listed (`WithUsername`); with a group, numeric parts are taken as they are and names are
/// looked up (`/etc/passwd`, `/etc/group`), an unlisted name being an error.
pub fn user_and_group(user: &ImageUser, passwd: &[PasswdEntry], groups: &[GroupEntry]) -> Result<(u32, u32), Error> {
    match (&user.user, &user.group) {
        (Account::Id(uid), None) => Ok(passwd.iter().find(|entry| entry.uid == *uid).map_or((*uid, 0), |entry| (entry.uid, entry.gid))),
        (Account::Name(name), None) => user_named(name, passwd).map(|entry| (entry.uid, entry.gid)),
        (user, Some(group)) => {
            let uid = match user {
                Account::Id(uid) => *uid,
                Account::Name(name) => user_named(name, passwd)?.uid,
            };
            let gid = match group {
                Account::Id(gid) => *gid,
                Account::Name(name) => group_named(name, groups)?,
            };
            Ok((uid, gid))
        }
    }
}

/// containerd's CRI `WithAdditionalGIDs`: the groups of `/etc/group` that list the user (by name,
/// a uid being first turned into its passwd name; an unlisted uid has none) as a member, except a
/// group named like the user.
pub fn additional_gids(user: &Account, passwd: &[PasswdEntry], groups: &[GroupEntry]) -> Vec<u32> {
    let name = match user {
        Account::Name(name) => name.as_str(),
        Account::Id(uid) => match passwd.iter().find(|entry| entry.uid == *uid) {
            Some(entry) => entry.name.as_str(),
            None => return Vec::new(),
        },
    };
    groups.iter().filter(|group| group.name != name && group.members.iter().any(|member| member == name)).map(|group| group.gid).collect()
}

/// Resolves the workload's identity as a plain container of the same template gets it from
/// kubelet, containerd and runc: [`requested_user`] through [`user_and_group`] (root when nothing
/// is asked), the primary group first, then [`additional_gids`], then the pod's
/// `supplementalGroups` (and `fsGroup`), without repeats.
pub fn resolve_identity(
    requested: Option<&ImageUser>,
    supplemental_groups: &[u32],
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<Identity, Error> {
    let (uid, gid) = match requested {
        Some(user) => user_and_group(user, passwd, groups)?,
        None => (0, 0),
    };
    let member = match requested {
        Some(ImageUser { user: Account::Name(name), .. }) => Account::Name(name.clone()),
        _ => Account::Id(uid),
    };
    let mut all_groups = vec![gid];
    all_groups.extend(additional_gids(&member, passwd, groups));
    all_groups.extend(supplemental_groups);
    let mut seen = std::collections::HashSet::new();
    all_groups.retain(|gid| seen.insert(*gid));
    let home = passwd.iter().find(|entry| entry.uid == uid).map_or_else(|| "/".to_string(), |entry| entry.home.clone());
    Ok(Identity { uid, gid, groups: all_groups, home })
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
extra:x:3000:root
";

    fn config(json: &str) -> ExecConfig {
        serde_json::from_str(json).expect("test config")
    }

    fn resolve(requested: Option<ImageUser>, supplemental: &[u32]) -> Result<Identity, Error> {
        resolve_identity(requested.as_ref(), supplemental, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    fn user(text: &str) -> Option<ImageUser> {
        ImageUser::parse(text)
    }

    #[test]
    fn passwd_and_group_parse_and_skip_garbage() {
        let passwd = parse_passwd(PASSWD);
        assert_eq!(passwd.len(), 3);
        assert_eq!(passwd[1], PasswdEntry { name: "alice".into(), uid: 1000, gid: 1000, home: "/home/alice".into() });
        let groups = parse_group(GROUP);
        assert_eq!(groups.len(), 6);
        assert_eq!(groups[1].members, vec!["alice".to_string(), "bob".to_string()]);
    }

    #[test]
    fn the_request_is_run_as_user_else_the_user_part_of_the_images_user_with_run_as_group() {
        assert_eq!(requested_user(&config("{}"), "").expect("ok"), None);
        assert_eq!(requested_user(&config("{}"), "jovyan").expect("ok"), user("jovyan"));
        assert_eq!(requested_user(&config(r#"{"runAsUser":7}"#), "jovyan").expect("ok"), user("7"));
        // kubelet drops the image's group: `1000:100` asks for uid 1000 only.
        assert_eq!(requested_user(&config("{}"), "1000:100").expect("ok"), user("1000"));
        assert_eq!(requested_user(&config("{}"), "postgres:ssl-cert").expect("ok"), user("postgres"));
        assert_eq!(requested_user(&config(r#"{"runAsGroup":5}"#), "jovyan").expect("ok"), user("jovyan:5"));
        assert_eq!(requested_user(&config(r#"{"runAsUser":1,"runAsGroup":5}"#), "").expect("ok"), user("1:5"));
    }

    #[test]
    fn run_as_group_without_any_user_is_refused_as_containerd_does() {
        let error = requested_user(&config(r#"{"runAsGroup":5}"#), "").expect_err("no user");
        assert_eq!(error.exit_code(), 78);
        assert!(
            error.to_string().contains(r#"user group "5" is specified without user"#) && error.to_string().contains("set runAsUser"),
            "{error}"
        );
    }

    #[test]
    fn nothing_asked_is_root_with_roots_groups_and_home() {
        assert_eq!(resolve(None, &[]).expect("root"), Identity { uid: 0, gid: 0, groups: vec![0, 3000], home: "/root".into() });
    }

    #[test]
    fn a_listed_uid_gets_its_passwd_group_member_groups_and_home() {
        assert_eq!(
            resolve(user("1000"), &[3000, 10]).expect("resolves"),
            Identity { uid: 1000, gid: 1000, groups: vec![1000, 10, 2000, 3000], home: "/home/alice".into() }
        );
    }

    #[test]
    fn an_unlisted_uid_gets_gid_zero_no_groups_and_slash_as_home() {
        // containerd's WithUserID: "if uid is not found in /etc/passwd, it sets the requested uid,
        // additionally sets the gid to 0" (the uid's own number is what docker's libcontainer did).
        assert_eq!(resolve(user("4242"), &[]).expect("resolves"), Identity { uid: 4242, gid: 0, groups: vec![0], home: "/".into() });
        assert_eq!(resolve_identity(user("4242").as_ref(), &[], &[], &[]).expect("no passwd at all").gid, 0);
    }

    #[test]
    fn a_name_is_looked_up_and_an_unknown_one_is_refused_with_what_to_do() {
        assert_eq!(
            resolve(user("bob"), &[]).expect("resolves"),
            Identity { uid: 1001, gid: 100, groups: vec![100, 10], home: "/home/bob".into() }
        );
        let error = resolve(user("jovyan"), &[]).expect_err("unknown");
        assert_eq!(error.exit_code(), 78);
        assert!(error.to_string().contains("no users found") && error.to_string().contains("\"jovyan\""), "{error}");
        assert!(error.to_string().contains("useradd") && error.to_string().contains("runAsUser"), "{error}");
    }

    #[test]
    fn with_a_group_numbers_are_taken_as_they_are_and_names_looked_up() {
        assert_eq!(resolve(user("1000:5"), &[]).expect("ids").gid, 5);
        assert_eq!(resolve(user("4242:7"), &[]).expect("unlisted ids").groups, vec![7]);
        assert_eq!(
            resolve(user("alice:users"), &[]).expect("names"),
            Identity { uid: 1000, gid: 100, groups: vec![100, 10, 2000], home: "/home/alice".into() }
        );
        assert_eq!(resolve(user("bob:2000"), &[]).expect("name and gid").gid, 2000);
        assert_eq!(resolve(user("1001:wheel"), &[]).expect("uid and group name").gid, 10);
        let error = resolve(user("alice:nogroup"), &[]).expect_err("unknown group");
        assert!(error.to_string().contains("no groups found") && error.to_string().contains("runAsGroup"), "{error}");
        assert!(resolve(user("nobody:users"), &[]).expect_err("unknown user").to_string().contains("no users found"));
    }

    #[test]
    fn a_group_named_like_the_user_is_not_an_additional_group() {
        let groups = parse_group("alice:x:1500:alice\nwheel:x:10:alice\n");
        assert_eq!(additional_gids(&Account::Name("alice".into()), &parse_passwd(PASSWD), &groups), vec![10]);
        assert_eq!(additional_gids(&Account::Id(4242), &parse_passwd(PASSWD), &groups), Vec::<u32>::new());
    }

    #[test]
    fn pod_groups_follow_without_repeats() {
        assert_eq!(resolve(user("1001:5"), &[5, 100, 3000]).expect("resolves").groups, vec![5, 10, 100, 3000]);
    }
}
