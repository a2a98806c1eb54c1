//! Every system call that changes what the process is (root, identity, capabilities) or checks a
//! mount, behind one trait: [`System`]. The logic in [`crate::enter`] and [`crate::rootfs`] is
//! unit-tested with a recording fake; [`RealSystem`] is exercised by the `*_root.rs` tests.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use caps::CapSet;
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::unistd::{Gid, Uid};

use crate::capabilities::CapabilityMask;

/// A failed privilege or capability change: which call, and the kernel's or library's reason.
pub type SysResult<T> = Result<T, String>;

/// The operations that change the process's root, identity and privileges.
pub trait System {
    /// Where `/` of the process currently is, for reading files with `std::fs` (`/` for the real
    /// thing; a fixture directory for the fake).
    fn root(&self) -> PathBuf;
    fn chroot(&mut self, path: &Path) -> Result<(), Errno>;
    fn chdir(&mut self, path: &Path) -> Result<(), Errno>;
    /// Creates a directory and its parents (inside the current root).
    fn create_dir_all(&mut self, path: &Path) -> std::io::Result<()>;
    fn is_mount_point(&self, path: &Path) -> bool;
    fn bounding_set(&self) -> SysResult<CapabilityMask>;
    fn permitted_set(&self) -> SysResult<CapabilityMask>;
    fn drop_from_bounding_set(&mut self, capability: caps::Capability) -> SysResult<()>;
    fn set_keep_capabilities(&mut self, keep: bool) -> SysResult<()>;
    fn set_groups(&mut self, groups: &[u32]) -> SysResult<()>;
    fn set_gid(&mut self, gid: u32) -> SysResult<()>;
    fn set_uid(&mut self, uid: u32) -> SysResult<()>;
    /// Sets effective and permitted to `capabilities`, inheritable and ambient to empty.
    fn set_process_capabilities(&mut self, capabilities: CapabilityMask) -> SysResult<()>;
    fn set_no_new_privileges(&mut self) -> SysResult<()>;
    /// When stdin is a terminal, makes this process's group its foreground group.
    fn take_foreground_terminal(&mut self);
    /// Replaces the process with `program`; returns only on failure.
    fn exec(&mut self, program: &Path, argv0: &OsString, args: &[OsString], environment: &[(OsString, OsString)]) -> std::io::Error;
}

/// The real system calls.
#[derive(Debug, Default)]
pub struct RealSystem;

fn describe(error: impl std::fmt::Display) -> String {
    error.to_string()
}

impl System for RealSystem {
    fn root(&self) -> PathBuf {
        PathBuf::from("/")
    }

    fn chroot(&mut self, path: &Path) -> Result<(), Errno> {
        nix::unistd::chroot(path)
    }

    fn chdir(&mut self, path: &Path) -> Result<(), Errno> {
        nix::unistd::chdir(path)
    }

    fn create_dir_all(&mut self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn is_mount_point(&self, path: &Path) -> bool {
        match std::fs::read_to_string("/proc/self/mountinfo") {
            Ok(mountinfo) => mount_points(&mountinfo).iter().any(|mount_point| mount_point == path),
            // Without /proc, a mount point is where the device changes from the parent's.
            Err(_) => device_differs_from_parent(path),
        }
    }

    fn bounding_set(&self) -> SysResult<CapabilityMask> {
        caps::read(None, CapSet::Bounding).map(CapabilityMask::from_capabilities).map_err(describe)
    }

    fn permitted_set(&self) -> SysResult<CapabilityMask> {
        caps::read(None, CapSet::Permitted).map(CapabilityMask::from_capabilities).map_err(describe)
    }

    fn drop_from_bounding_set(&mut self, capability: caps::Capability) -> SysResult<()> {
        caps::drop(None, CapSet::Bounding, capability).map_err(describe)
    }

    fn set_keep_capabilities(&mut self, keep: bool) -> SysResult<()> {
        nix::sys::prctl::set_keepcaps(keep).map_err(describe)
    }

    fn set_groups(&mut self, groups: &[u32]) -> SysResult<()> {
        let groups: Vec<Gid> = groups.iter().copied().map(Gid::from_raw).collect();
        nix::unistd::setgroups(&groups).map_err(describe)
    }

    fn set_gid(&mut self, gid: u32) -> SysResult<()> {
        let gid = Gid::from_raw(gid);
        nix::unistd::setresgid(gid, gid, gid).map_err(describe)
    }

    fn set_uid(&mut self, uid: u32) -> SysResult<()> {
        let uid = Uid::from_raw(uid);
        nix::unistd::setresuid(uid, uid, uid).map_err(describe)
    }

    fn set_process_capabilities(&mut self, capabilities: CapabilityMask) -> SysResult<()> {
        let set = capabilities.to_caps_set();
        // Effective first: the new effective set must stay within the permitted set at each step.
        caps::set(None, CapSet::Effective, &set).map_err(describe)?;
        caps::set(None, CapSet::Permitted, &set).map_err(describe)?;
        caps::clear(None, CapSet::Inheritable).map_err(describe)?;
        // Ambient capabilities need kernel 4.3; an older kernel has none to clear.
        if caps::runtime::ambient_set_supported().is_ok() {
            caps::clear(None, CapSet::Ambient).map_err(describe)?;
        }
        Ok(())
    }

    fn set_no_new_privileges(&mut self) -> SysResult<()> {
        nix::sys::prctl::set_no_new_privs().map_err(describe)
    }

    fn take_foreground_terminal(&mut self) {
        let stdin = std::io::stdin();
        if !nix::unistd::isatty(&stdin).unwrap_or(false) {
            return;
        }
        // A background process group calling tcsetpgrp gets SIGTTOU unless it is blocked.
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let mut previous = SigSet::empty();
        if sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut previous)).is_err() {
            return;
        }
        // Best effort: without a controlling terminal (ENOTTY) there is nothing to hand over.
        let _ = nix::unistd::tcsetpgrp(&stdin, nix::unistd::getpgrp());
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    }

    fn exec(&mut self, program: &Path, argv0: &OsString, args: &[OsString], environment: &[(OsString, OsString)]) -> std::io::Error {
        // PID 1 blocks every signal (it reads them from a signalfd) and a spawned child inherits
        // that mask: the workload must start with none blocked, or SIGTERM would never reach it.
        if let Err(errno) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None) {
            return std::io::Error::from(errno);
        }
        // std's exec also restores SIGPIPE's default disposition (Rust ignores it at startup).
        std::process::Command::new(program)
            .arg0(argv0)
            .args(args)
            .env_clear()
            .envs(environment.iter().map(|(key, value)| (key, value)))
            .exec()
    }
}

fn device_differs_from_parent(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let parent = path.parent().unwrap_or(path);
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(own), Ok(parent)) => own.dev() != parent.dev(),
        _ => false,
    }
}

/// Mount points listed in a `/proc/<pid>/mountinfo` (field 5), with the kernel's octal escapes
/// (`\040` for a space, ...) decoded.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|escaped| PathBuf::from(OsString::from_vec(unescape_octal(escaped))))
        .collect()
}

fn unescape_octal(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\' && index + 3 < bytes.len() && bytes[index + 1..index + 4].iter().all(|digit| (b'0'..=b'7').contains(digit))
        {
            let value = bytes[index + 1..index + 4].iter().fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
            decoded.push(u8::try_from(value).unwrap_or(b'?'));
            index += 4;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_mount_points_are_decoded() {
        let mountinfo = "\
22 1 0:21 / / rw,relatime - overlay overlay rw
30 22 0:40 / /.sc/rootfs rw,relatime - overlay overlay rw
31 22 0:41 / /with\\040space rw - tmpfs tmpfs rw
";
        assert_eq!(mount_points(mountinfo), vec![PathBuf::from("/"), PathBuf::from("/.sc/rootfs"), PathBuf::from("/with space")]);
    }

    #[test]
    fn a_trailing_backslash_is_kept_literally() {
        assert_eq!(unescape_octal("a\\04"), b"a\\04".to_vec());
        assert_eq!(unescape_octal("a\\134b"), b"a\\b".to_vec());
    }
}
