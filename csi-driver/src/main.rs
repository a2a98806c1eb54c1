use std::process::ExitCode;

use clap::Parser;
use csi_driver::app::{self, Args};

fn main() -> ExitCode {
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
