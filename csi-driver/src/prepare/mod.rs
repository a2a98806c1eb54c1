//! Preparing a consumer's view of its rootfs, in the consumer's own namespaces: its `/proc`, `/dev`
//! and `/sys`, and kubelet's `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` and service-account
//! token directory, mounted at the same paths inside `/.sc/rootfs`.
//!
//! Only a privileged process can mount in another process's mount namespace, and `setns` into a
//! mount namespace needs a single-threaded process: the plugin's async runtime cannot do it. So
//! the control socket ([`crate::control`]) starts this module's helper as a fresh process — the
//! plugin's own binary, with a hidden subcommand of its argument parser ([`HelperStage`]) — in two
//! stages:
//!
//! 1. `sc-csi-driver __prepare --pid N --pod-uid U` pins `/proc/N`, checks again that N is in a
//!    container of pod U, enters N's PID namespace (which only applies to children) and starts
//!    stage 2 (`std::process::Command`: fork and exec, no Rust code runs between them).
//! 2. `sc-csi-driver __prepare-in-namespaces ...`, now a member of that PID namespace, pins
//!    `/proc/N` again, enters N's mount namespace and its root directory — it then sees exactly
//!    what the container sees, including the container's `/proc`, whose `/proc/self/fd/<fd>`
//!    magic links address the mount points — and mounts, following the [`PLAN`].
//!
//! Each stage prints one [`HelperReport`] JSON line on stdout; the plugin turns it into the
//! `ControlResponse` the consumer gets.
//!
//! `/proc` is a recursive bind of the container's own `/proc`, not a fresh proc mount: it shows
//! the same PID namespace, and keeps what the container runtime masked or made read-only in it
//! (`/proc/sysrq-trigger`, `/proc/sys`, `/proc/kcore`, ...), which a fresh mount would expose to a
//! workload running as uid 0.
//!
//! Here: `protocol` (the stages' command lines and report), `peer` (which process may ask),
//! `stages` (the two processes), `plan` (what is mounted, pure, and the all-or-nothing walk
//! over it), `fd_mounts` (the real mounts) and `error` (the helper's [`HelperError`]; the
//! control socket answers with its own `control::ControlError`).

mod error;
mod fd_mounts;
mod peer;
mod plan;
mod protocol;
mod stages;

pub use error::{Fault, HelperError, NotThisPod};
pub use peer::authenticate;
pub use plan::{Mounting, Mounts, PLAN, SERVICE_ACCOUNT_DIR, Step, mount_plan};
pub use protocol::{HELPER_SUBCOMMAND, HelperArgs, HelperReport, HelperStage, IN_NAMESPACES_SUBCOMMAND, parse_report, tail};
pub use stages::{harden_helper, run_stage};
