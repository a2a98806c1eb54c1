//! `sc-exec`: the consumer's PID 1, the `kubectl exec` entry into the persistent rootfs, the
//! provider's pause, and its own installer. See the crate README for what users see.

pub mod accounts;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod enter;
pub mod error;
pub mod farm;
pub mod install;
pub mod lookup;
pub mod rootfs;
pub mod supervisor;
pub mod sys;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use sc_api::consts::CONSUMER_ROOTFS_PATH;
use sc_api::exec_config::EXEC_CONFIG_ENV;

use crate::cli::{CommandLine, Invocation};
use crate::config::parse_exec_config;
use crate::enter::{EnterRequest, WorkingDirectory, enter_and_exec};
use crate::error::Error;
use crate::sys::{RealSystem, System};

/// Runs `sc-exec` with this argv and returns the process exit code.
pub fn main_with_args(argv: &[OsString]) -> i32 {
    match dispatch(argv) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sc-exec: {error}");
            error.exit_code()
        }
    }
}

fn dispatch(argv: &[OsString]) -> Result<i32, Error> {
    match cli::parse(argv)? {
        Invocation::Help => {
            println!("{}", cli::USAGE);
            Ok(0)
        }
        Invocation::Version => {
            println!("sc-exec {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Invocation::Pause => supervisor::pause(),
        Invocation::Install { dir } => {
            // /proc/self/exe is this very binary even if its path changed; without /proc (a bare
            // chroot), argv[0] is the best remaining guess when it is a path.
            let source = match argv.first().map(PathBuf::from) {
                Some(argv0) if !Path::new("/proc/self/exe").exists() && argv0.components().count() > 1 => argv0,
                _ => PathBuf::from("/proc/self/exe"),
            };
            let installed = install::install(&source, &dir)?;
            println!("sc-exec: installed {}", installed.display());
            Ok(0)
        }
        Invocation::Run(command) => supervisor::run_as_init(&exec_config()?, &command),
        Invocation::StartWorkload(command) => {
            let config = exec_config()?;
            let working_directory = PathBuf::from(config.working_dir.clone().unwrap_or_else(|| "/".into()));
            Err(enter_rootfs(command, config, WorkingDirectory::Workload(working_directory), true))
        }
        Invocation::Exec(command) => {
            let config = exec_config()?;
            let system = RealSystem;
            if !system.is_mount_point(Path::new(CONSUMER_ROOTFS_PATH)) {
                return Err(Error::RootfsNotMounted {
                    path: PathBuf::from(CONSUMER_ROOTFS_PATH),
                    command: command.program.to_string_lossy().into_owned(),
                });
            }
            // A cwd outside our root reads as "(unreachable)/..."; only an absolute one is kept.
            let cwd = std::env::current_dir().ok().filter(|cwd| cwd.is_absolute()).unwrap_or_else(|| PathBuf::from("/"));
            Err(enter_rootfs(command, config, WorkingDirectory::KeepIfPresent(cwd), false))
        }
    }
}

fn exec_config() -> Result<sc_api::exec_config::ExecConfig, Error> {
    parse_exec_config(std::env::var_os(EXEC_CONFIG_ENV).as_deref())
}

fn enter_rootfs(
    command: CommandLine,
    config: sc_api::exec_config::ExecConfig,
    working_directory: WorkingDirectory,
    take_terminal: bool,
) -> Error {
    enter_and_exec(
        &mut RealSystem,
        EnterRequest {
            rootfs: PathBuf::from(CONSUMER_ROOTFS_PATH),
            working_directory,
            command,
            config,
            inherited_environment: std::env::vars_os().collect(),
            take_terminal,
        },
    )
}
