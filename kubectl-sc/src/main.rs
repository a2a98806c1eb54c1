//! `kubectl-sc`: found by kubectl on PATH and run as `kubectl sc ...`.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    kubectl_sc::main_with_args(std::env::args_os()).await
}
