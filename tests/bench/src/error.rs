//! Everything that stops a benchmark section, worded for the person reading the report.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot reach the cluster: {0} (run the benchmark through tests/e2e/bench.sh, which starts the cluster and sets KUBECONFIG)")]
    Connect(#[source] kube::Error),
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("the watch ended while waiting for {what}")]
    WatchEnded { what: String },
    #[error("`kubectl {args}` failed: {message}")]
    Kubectl { args: String, message: String },
    #[error("{what}: unexpected output {output:?}")]
    Output { what: String, output: String },
    #[error("{action} {path}: {source} (the benchmark runs on the node, as root)")]
    Host {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

/// Wraps a kube error with what the benchmark was doing.
pub fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> BenchError {
    let action = action.into();
    move |source| BenchError::Api { action, source }
}

/// Wraps an I/O error on a node file.
pub fn host(action: &'static str, path: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let path = path.into();
    move |source| BenchError::Host { action, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_was_awaited_and_what_to_do() {
        let timeout = BenchError::Timeout { what: "pod bench/plain-1 to be Ready".into(), after: Duration::from_secs(120) };
        assert_eq!(timeout.to_string(), "timed out after 120s waiting for pod bench/plain-1 to be Ready");
        let host = host("reading", "/proc/1/status")(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(host.to_string(), "reading /proc/1/status: permission denied (the benchmark runs on the node, as root)");
        let kubectl = BenchError::Kubectl { args: "exec -n b x -- true".into(), message: "exit status 1: error: pod not found".into() };
        assert_eq!(kubectl.to_string(), "`kubectl exec -n b x -- true` failed: exit status 1: error: pod not found");
    }
}
