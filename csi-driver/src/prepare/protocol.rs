//! What passes between the plugin and its helper stages: the stages' command lines (hidden
//! subcommands of the plugin's own parser, see `crate::app::Invocation`) and the one JSON line of
//! [`HelperReport`] each stage prints.

use serde::{Deserialize, Serialize};

/// Subcommand that turns `sc-csi-driver` into the prepare helper's first stage.
pub const HELPER_SUBCOMMAND: &str = "__prepare";
/// Subcommand of the second stage (started by the first, inside the PID namespace).
pub const IN_NAMESPACES_SUBCOMMAND: &str = "__prepare-in-namespaces";

/// The helper stages, as subcommands of `sc-csi-driver`. Hidden: only the plugin starts them.
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum HelperStage {
    /// internal: checks the process and enters its PID namespace, then runs the second stage
    #[command(name = HELPER_SUBCOMMAND, hide = true)]
    EnterPidNamespace(HelperArgs),
    /// internal: prepares a consumer's rootfs in its mount namespace
    #[command(name = IN_NAMESPACES_SUBCOMMAND, hide = true)]
    PrepareInNamespaces(HelperArgs),
}

impl HelperStage {
    /// The command line that runs this stage, after the program (`/proc/self/exe`).
    pub fn to_args(&self) -> Vec<String> {
        let (subcommand, args) = match self {
            HelperStage::EnterPidNamespace(args) => (HELPER_SUBCOMMAND, args),
            HelperStage::PrepareInNamespaces(args) => (IN_NAMESPACES_SUBCOMMAND, args),
        };
        std::iter::once(subcommand.to_owned()).chain(args.to_args()).collect()
    }
}

/// Arguments of both helper stages.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct HelperArgs {
    /// The consumer's process, as a pid of the plugin's (the host's) PID namespace.
    #[arg(long)]
    pub pid: i32,
    /// The UID of the pod the process must belong to.
    #[arg(long)]
    pub pod_uid: String,
    /// The pod, for messages (`namespace/name`).
    #[arg(long)]
    pub pod: String,
    /// The process that started this stage (the plugin, for stage 1): the stage gives up if it
    /// is already gone, as its parent-death signal would then never come. Stage 2 has none: its
    /// parent is outside its PID namespace, where it has no pid.
    #[arg(long)]
    pub parent_pid: Option<u32>,
}

impl HelperArgs {
    /// The arguments after the stage's subcommand.
    pub fn to_args(&self) -> Vec<String> {
        let mut args =
            vec!["--pid".into(), self.pid.to_string(), "--pod-uid".into(), self.pod_uid.clone(), "--pod".into(), self.pod.clone()];
        if let Some(parent) = self.parent_pid {
            args.extend(["--parent-pid".into(), parent.to_string()]);
        }
        args
    }
}

/// What a helper stage prints, as one JSON line on stdout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum HelperReport {
    #[serde(rename_all = "camelCase")]
    Prepared {
        /// Destinations mounted now (paths as resolved inside the rootfs).
        mounted: Vec<String>,
        /// Destinations that were already mounted (an earlier request from the same container).
        already_mounted: Vec<String>,
        /// Optional sources the container does not have (no service-account token, ...).
        absent: Vec<String>,
    },
    Failed {
        message: String,
    },
}

/// The end of a helper's stderr, short enough for a message.
pub fn tail(stderr: &[u8]) -> String {
    const KEEP: usize = 2000;
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let start = text.char_indices().rev().nth(KEEP).map_or(0, |(index, _)| index);
    text[start..].to_owned()
}

/// The last line of a helper's stdout as a report.
pub fn parse_report(stdout: &[u8]) -> Option<HelperReport> {
    let text = String::from_utf8_lossy(stdout);
    text.lines().rev().find(|line| !line.trim().is_empty()).and_then(|line| serde_json::from_str(line.trim()).ok())
}

/// The line a stage prints for its report; a report that cannot be encoded still says so in a
/// line [`parse_report`] reads.
pub fn report_line(report: &HelperReport) -> String {
    serde_json::to_string(report).unwrap_or_else(|error| format!(r#"{{"outcome":"failed","message":"encoding the report: {error}"}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::SERVICE_ACCOUNT_DIR;

    #[test]
    fn reports_round_trip_and_the_last_line_wins() {
        let prepared =
            HelperReport::Prepared { mounted: vec!["/proc".into()], already_mounted: vec![], absent: vec![SERVICE_ACCOUNT_DIR.into()] };
        let text = serde_json::to_string(&prepared).expect("serializes");
        assert!(text.starts_with(r#"{"outcome":"prepared","mounted":["/proc"],"alreadyMounted":[]"#), "{text}");
        let stdout = format!("noise\n{text}\n\n");
        assert_eq!(parse_report(stdout.as_bytes()), Some(prepared.clone()));
        assert_eq!(parse_report(br#"{"outcome":"failed","message":"no"}"#), Some(HelperReport::Failed { message: "no".into() }));
        assert_eq!(parse_report(b"thread 'main' panicked\n"), None);
        assert_eq!(parse_report(b""), None);
        assert_eq!(parse_report(report_line(&prepared).as_bytes()), Some(prepared));
    }

    #[test]
    fn the_tail_of_a_long_stderr_keeps_its_end() {
        let long = format!("start{}end", "x".repeat(5000));
        let kept = tail(long.as_bytes());
        assert!(kept.ends_with("xend") && !kept.contains("start"), "{kept}");
        assert_eq!(tail(b"  short\n"), "short");
    }
}
