//! Every way `kubectl sc` can fail, each message saying what went wrong and what to do.

use std::time::Duration;

use sc_api::consts::SC_KIND;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{SC_KIND} {name:?} not found in namespace {namespace:?} (list them with: kubectl sc list)")]
    NotFound { name: String, namespace: String },

    #[error(
        "{SC_KIND} {name:?} already exists in namespace {namespace:?} (see it with: kubectl sc status {name} -n {namespace}; \
         to replace it, delete it first with: kubectl sc delete {name} -n {namespace}, which also deletes its root filesystem)"
    )]
    AlreadyExists { name: String, namespace: String },

    #[error(
        "the {SC_KIND} API (stoppablecontainers.{group}) is not installed in the cluster at {server}: \
         install the stoppablecontainer Helm chart (charts/stoppablecontainer) first"
    )]
    CrdNotInstalled { group: &'static str, server: String },

    #[error(
        "cannot reach the Kubernetes API server at {server} (from {kubeconfig}): {cause}. \
         Check that the cluster is running and that KUBECONFIG, --kubeconfig or --context select the right cluster"
    )]
    Unreachable { server: String, kubeconfig: String, cause: String },

    #[error(
        "cannot load a Kubernetes client configuration ({kubeconfig}): {cause}. \
         Point KUBECONFIG or --kubeconfig at a valid kubeconfig file, and --context at one of its contexts"
    )]
    Config { kubeconfig: String, cause: String },

    #[error("the API server at {server} refused to {action}: {message} (check your RBAC permissions in namespace {namespace:?})")]
    Forbidden { server: String, action: String, namespace: String, message: String },

    #[error("the API server at {server} rejected the request to {action}: {message} (HTTP {code}, {reason})")]
    Api { server: String, action: String, code: u16, reason: String, message: String },

    #[error("talking to the API server at {server} to {action} failed: {cause}")]
    Client { server: String, action: String, cause: String },

    #[error(
        "{SC_KIND} {name:?} failed while waiting for it to be {target}: {message} \
         (details: kubectl sc status {name} -n {namespace})"
    )]
    WorkloadFailed { name: String, namespace: String, target: &'static str, message: String },

    #[error(transparent)]
    WaitTimeout(Box<WaitTimeout>),

    #[error(
        "timed out after {timeout:?} waiting for {SC_KIND} {name:?} to disappear; it still has the finalizers \
         [{finalizers}] (the operator and the CSI node plugin remove them once the pods and the node data are gone; \
         check they run: kubectl get pods -n <chart namespace>)"
    )]
    DeleteTimeout { name: String, timeout: Duration, finalizers: String },

    #[error(
        "{SC_KIND} {name:?} is stopped, so there is no consumer pod to {action}; start it with: kubectl sc start {name} -n {namespace} --wait"
    )]
    NotRunning { name: String, namespace: String, action: &'static str },

    /// Flags that clap accepts one by one but that do not go together (`--storage-class`
    /// without `--storage`, ...); the message says which and what to do.
    #[error("{0}")]
    InvalidFlags(String),

    #[error("--all-namespaces (-A) applies to `list` only; use -n <namespace> with `{command}`")]
    AllNamespacesNotSupported { command: &'static str },

    #[error("cannot run kubectl ({program}), which `kubectl sc {command}` uses: {cause}. Install kubectl or put it on PATH")]
    KubectlMissing { program: String, command: &'static str, cause: String },

    /// kubectl (exec, logs) exited unsuccessfully; it has already printed why.
    #[error("kubectl exited with status {code}")]
    KubectlFailed { code: i32 },

    #[error("the pod {pod} that reads {what} {why}{}", output_tail(output))]
    LayerPod { pod: String, what: String, why: String, output: String },

    #[error(transparent)]
    LayerPodPlan(#[from] crate::layer_pod::LayerPodError),

    #[error("cannot read what the pod printed: {0}")]
    LayerReport(#[from] sc_api::layer_diff::ReportError),

    #[error("cannot serialize the output: {0}")]
    Json(#[from] serde_json::Error),

    #[error("cannot serialize the output: {0}")]
    Yaml(#[from] serde_yaml::Error),

    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),

    #[error("internal error in kubectl-sc: {0} (please report it)")]
    Internal(String),
}

/// The last lines a failed layer pod printed, after its failure.
fn output_tail(output: &str) -> String {
    let output = output.trim();
    if output.is_empty() { String::new() } else { format!("; it printed:\n{output}") }
}

/// A `--wait` that ran out of time, with the last state seen (boxed in [`CliError`]: it is the
/// largest variant).
#[derive(Debug, thiserror::Error)]
#[error(
    "timed out after {timeout:?} waiting for {SC_KIND} {name:?} to be {target}; last phase {last_phase}, \
     message: {last_message} (details: kubectl sc status {name} -n {namespace})"
)]
pub struct WaitTimeout {
    pub name: String,
    pub namespace: String,
    pub target: &'static str,
    pub timeout: Duration,
    pub last_phase: String,
    pub last_message: String,
}

impl CliError {
    /// Exit status of the plugin: a failed kubectl's own status (so `kubectl sc exec` passes the
    /// remote command's status through), 2 for flags that do not go together (as clap exits for
    /// any other bad argument), else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::KubectlFailed { code } => u8::try_from(*code).ok().filter(|code| *code != 0).unwrap_or(1),
            CliError::InvalidFlags(_) => 2,
            _ => 1,
        }
    }

    /// Whether the message is worth printing (kubectl has already explained its own failures).
    pub fn should_print(&self) -> bool {
        !matches!(self, CliError::KubectlFailed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_object_and_the_way_to_list() {
        let error = CliError::NotFound { name: "x".into(), namespace: "y".into() };
        assert_eq!(error.to_string(), r#"StoppableContainer "x" not found in namespace "y" (list them with: kubectl sc list)"#);
        assert_eq!(error.exit_code(), 1);
    }

    #[test]
    fn flags_that_do_not_go_together_exit_like_other_bad_arguments() {
        let error = CliError::InvalidFlags("--storage-class needs --storage".into());
        assert_eq!((error.to_string().as_str(), error.exit_code()), ("--storage-class needs --storage", 2));
    }

    #[test]
    fn kubectl_status_passes_through() {
        assert_eq!(CliError::KubectlFailed { code: 7 }.exit_code(), 7);
        assert_eq!(CliError::KubectlFailed { code: -1 }.exit_code(), 1);
        assert_eq!(CliError::KubectlFailed { code: 256 }.exit_code(), 1);
        assert!(!CliError::KubectlFailed { code: 7 }.should_print());
    }
}
