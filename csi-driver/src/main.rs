use std::process::ExitCode;

use clap::Parser;
use csi_driver::app::{self, Invocation};
use csi_driver::prepare;

fn main() -> ExitCode {
    match Invocation::parse() {
        // Before anything else: a helper stage must be a single-threaded process to enter
        // another mount namespace, and its stdout carries only its report.
        Invocation::Helper(stage) => prepare::run_stage(&stage),
        Invocation::Plugin(args) => {
            app::init_logging(args.log_format);
            match app::run(*args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "sc-csi-driver failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
