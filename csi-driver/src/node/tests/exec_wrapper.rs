//! The provider's exec-wrapper volume against a fake node: the read-only bind of the plugin's
//! `sc-exec` directory, its idempotent publish, its unpublish (also after a restart) and the
//! refusal of a source that could expose anything else.

use std::path::{Path, PathBuf};

use super::{KUBELET, POD_UID, data, mounter_on, node};
use crate::node::{Mounter, PublishError};
use crate::sys::fake::{FakeEntry, FakeSystem};
use crate::sys::{FileIdentity, System};
use crate::validate::{ExecWrapperRequest, UnpublishRequest};

fn target() -> PathBuf {
    PathBuf::from(format!("{KUBELET}/pods/{POD_UID}/volumes/kubernetes.io~csi/sc-bin/mount"))
}

fn request() -> ExecWrapperRequest {
    ExecWrapperRequest { volume_id: "csi-bin".into(), target_path: target() }
}

fn unpublish_request() -> UnpublishRequest {
    UnpublishRequest { volume_id: "csi-bin".into(), target_path: target() }
}

fn binary() -> PathBuf {
    data().exec_wrapper_dir().join("sc-exec")
}

/// [`node`] with the exec-wrapper directory as the DaemonSet's init container leaves it.
fn installed() -> Mounter<FakeSystem> {
    let node = node();
    let dir = data().exec_wrapper_dir();
    let system = node.system();
    system.add_directory(&dir);
    system.add_directory(target().parent().expect("kubelet's volume directory"));
    let mut state = system.state();
    state.entries.insert(binary(), FakeEntry::File { contents: b"\x7fELF".to_vec(), mode: 0o755 });
    state.identities.insert(dir, FileIdentity { device: 254, inode: 4242 });
    drop(state);
    node
}

fn is_mounted(node: &Mounter<FakeSystem>, path: &Path) -> bool {
    crate::mountinfo::mount_at(&node.host_mounts().expect("mountinfo"), path).is_some()
}

#[test]
fn the_exec_wrapper_is_bound_read_only_and_executable_once() {
    let node = installed();
    node.publish_exec_wrapper(&request()).expect("published");
    let host = node.host_mounts().expect("mountinfo");
    let bind = crate::mountinfo::mount_at(&host, &target()).expect("the bind");
    assert_eq!(bind.root, data().exec_wrapper_dir());
    assert!(!bind.is_read_write(), "nothing can be planted through it");
    for option in ["nosuid", "nodev"] {
        assert!(bind.mount_options.iter().any(|mounted| mounted == option), "{option}");
    }
    assert!(!bind.mount_options.iter().any(|mounted| mounted == "noexec"), "the provider runs sc-exec from it");
    assert!(node.records.load("csi-bin").expect("load").is_none(), "no record: it is recognised by identity");
    // A repeated publish finds it and mounts nothing more.
    node.publish_exec_wrapper(&request()).expect("published again");
    assert_eq!(node.system().mounts_under(&target()), [target()]);
}

#[test]
fn unpublish_unmounts_the_bind_also_after_a_restart_and_converges() {
    let node = installed();
    node.publish_exec_wrapper(&request()).expect("published");
    // A plugin restart: recovery looks at records and at this plugin's tmpfs, so it keeps the
    // bind as it is and counts no rootfs publication.
    let restarted = mounter_on(node.system().clone());
    let recovered = restarted.recover().expect("recovered");
    assert_eq!((recovered.live, recovered.unwound.len()), (0, 0));
    assert!(is_mounted(&restarted, &target()), "recovery leaves the provider's bind alone");
    restarted.unpublish(&unpublish_request()).expect("unpublished");
    assert!(!is_mounted(&restarted, &target()));
    assert!(!restarted.system().exists(&target()), "the target directory is removed");
    restarted.unpublish(&unpublish_request()).expect("a repeated unpublish converges");
    assert!(restarted.system().is_directory(&data().exec_wrapper_dir()), "the source stays for the next provider");
}

/// A change to the node that makes the exec-wrapper directory unfit.
type Spoil = dyn Fn(&FakeSystem);

#[test]
fn a_source_that_could_expose_anything_else_is_refused_and_nothing_is_mounted() {
    let dir = data().exec_wrapper_dir();
    let cases: Vec<(&str, Box<Spoil>)> = vec![
        (
            "it holds no sc-exec",
            Box::new(|system| {
                system.state().entries.remove(&binary());
            }),
        ),
        (
            "it is a symlink, which is never followed",
            Box::new(|system| {
                let mut state = system.state();
                state.entries.remove(&binary());
                state.entries.insert(data().exec_wrapper_dir(), FakeEntry::Symlink { target: "/".into() });
            }),
        ),
        (
            "it does not exist",
            Box::new(|system| {
                let mut state = system.state();
                state.entries.remove(&binary());
                state.entries.remove(&data().exec_wrapper_dir());
            }),
        ),
        ("besides sc-exec; it must hold nothing else", Box::new(|system| system.put_file(&data().exec_wrapper_dir().join("shadow"), b"x"))),
        (
            "it must be owned by root and writable by nobody else (it is uid 1000",
            Box::new(|system| {
                system.state().owners.insert(data().exec_wrapper_dir(), 1000);
            }),
        ),
        (
            "mode 777",
            Box::new(|system| {
                system.state().entries.insert(data().exec_wrapper_dir(), FakeEntry::Directory { mode: 0o777 });
            }),
        ),
        (
            "its sc-exec is not a regular file (Symlink)",
            Box::new(|system| {
                system.state().entries.insert(binary(), FakeEntry::Symlink { target: "/bin/sh".into() });
            }),
        ),
        (
            "its sc-exec must be owned by root, executable and writable by nobody else (it is uid 0, mode 666)",
            Box::new(|system| {
                system.state().entries.insert(binary(), FakeEntry::File { contents: vec![], mode: 0o666 });
            }),
        ),
    ];
    for (expected, spoil) in cases {
        let node = installed();
        spoil(node.system());
        let error = node.publish_exec_wrapper(&request()).expect_err(expected);
        assert!(matches!(error, PublishError::ExecWrapperSource { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains(expected), "{message:?} should contain {expected:?}");
        assert!(message.contains(&format!("sc-exec install {}", dir.display())), "{message}");
        assert!(!is_mounted(&node, &target()), "{expected}: nothing mounted");
    }
}

#[test]
fn a_foreign_mount_on_the_target_is_refused_and_an_unpublish_leaves_it() {
    let node = installed();
    node.system().add_directory(&target());
    node.system().add_foreign_mount("nfs", "srv:/x", &target());
    let error = node.publish_exec_wrapper(&request()).expect_err("refused");
    assert!(matches!(error, PublishError::ForeignMount { .. }), "{error}");
    node.unpublish(&unpublish_request()).expect_err("not the plugin's to unmount");
    assert!(is_mounted(&node, &target()));
}
