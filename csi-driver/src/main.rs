use std::process::ExitCode;

use clap::Parser;
use csi_driver::app::{self, Args};

fn main() -> ExitCode {
    // The control socket re-runs this binary as its prepare helper (hidden subcommands): it must
    // start as a fresh single-threaded process to enter another mount namespace.
    if let Some(code) = csi_driver::prepare::run_if_helper(std::env::args_os()) {
        return code;
    }
    let args = Args::parse();
    app::init_logging(args.log_format);
    match app::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "sc-csi-driver failed");
            ExitCode::FAILURE
        }
    }
}
