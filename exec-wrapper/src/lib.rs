//! `sc-exec`: the consumer's PID 1, the `kubectl exec` entry into the persistent rootfs, the
//! provider's pause, and its own installer. See the crate README for what users see.

pub mod accounts;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod enter;
pub mod error;
pub mod farm;
pub mod image;
pub mod install;
pub mod layer;
pub mod lookup;
pub mod rootfs;
pub mod supervisor;
pub mod sys;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use sc_api::consts::CONSUMER_ROOTFS_PATH;
use sc_api::exec_config::{EXEC_CONFIG_ENV, ExecConfig};
use sc_api::image_config::{CONSUMER_IMAGE_CONFIG_PATH, PublishedImage};
use sc_api::layer_diff::FactsReport;
use sc_api::process::{working_dir, workload_argv};

use crate::cli::{CommandLine, Invocation};
use crate::config::{parse_exec_config, path_variable, workload_environment};
use crate::enter::{EnterRequest, WorkingDirectory, check_run_as_non_root, enter_and_exec};
use crate::error::Error;
use crate::image::read_published_image;
use crate::sys::{RealSystem, System};

/// Kubelet's default `terminationMessagePath`: what PID 1 writes there, kubelet shows as the
/// container's termination message (`kubectl describe`, the pod's status).
const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

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
        Invocation::LayerDiff { upper, opaque_dirs, lower } => {
            print_json(&layer::diff::diff_report(&upper, opaque_dirs.as_deref(), &lower)?)
        }
        Invocation::LayerFacts { paths, root } => {
            let paths = layer::diff::read_path_list(&paths, "the paths to look up")?;
            print_json(&FactsReport::new(&layer::conflicts::path_facts(&root, &paths)?))
        }
        Invocation::Run(words) => with_termination_message(run_workload(&words)),
        Invocation::StartWorkload(command) => {
            let config = exec_config()?;
            let published = published_image()?;
            let working_directory =
                WorkingDirectory::Workload(PathBuf::from(working_dir(config.working_dir.as_deref(), published.config())));
            with_termination_message(Err(enter_rootfs(command, config, &published, working_directory, true)))
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
            let published = published_image()?;
            // A plain container's exec starts in the container's working directory.
            let working_directory =
                WorkingDirectory::KeepIfPresent(PathBuf::from(working_dir(config.working_dir.as_deref(), published.config())));
            Err(enter_rootfs(command, config, &published, working_directory, false))
        }
    }
}

/// Writes `document` as one line of JSON on stdout (what `kubectl sc` reads from the pod's log).
fn print_json(document: &impl serde::Serialize) -> Result<i32, Error> {
    let mut json = serde_json::to_vec(document).map_err(|source| Error::io("encoding the JSON output", source.into()))?;
    json.push(b'\n');
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&json).and_then(|()| stdout.flush()).map_err(|source| Error::io("writing the JSON output", source))?;
    Ok(0)
}

/// PID 1: decides the workload's argv and checks what kubelet checks before anything starts, so a
/// workload that cannot run fails at once with the reason, not after the rootfs wait.
fn run_workload(words: &[OsString]) -> Result<i32, Error> {
    let config = exec_config()?;
    let published = published_image()?;
    let image = published.config();
    check_run_as_non_root(&config, image)?;
    let command = workload_command(&config, words, &published)?;
    let container_environment: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let environment = workload_environment(&container_environment, image.map_or(&[], |image| image.env.as_slice()));
    supervisor::run_as_init(&config, &command, path_variable(&environment))
}

/// The workload's argv from the words after `sc-exec run --` and the image's `Entrypoint`/`Cmd`,
/// as `config.argv` says the template set them; an impossible one says what to set.
pub fn workload_command(config: &ExecConfig, words: &[OsString], published: &PublishedImage) -> Result<CommandLine, Error> {
    let words = words
        .iter()
        .map(|word| word.to_str().map(str::to_owned))
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| Error::Usage("the workload's command and args must be valid UTF-8 (as in a pod spec)".into()))?;
    let argv = workload_argv(config.argv, &words, published.config()).map_err(|error| match published {
        PublishedImage::Unavailable { reason, .. } => Error::NoCommand(format!("{error} ({reason})")),
        PublishedImage::Runtime { .. } => Error::NoCommand(error.to_string()),
    })?;
    match argv.split_first() {
        Some((program, args)) if !program.is_empty() => {
            Ok(CommandLine { program: program.into(), args: args.iter().map(OsString::from).collect() })
        }
        _ => Err(Error::NoCommand("the workload's command is an empty string; set `command` in the pod template".into())),
    }
}

/// Also records a failure of the workload's start as the container's termination message, when
/// the container has the file (kubelet creates it; nothing is created here).
fn with_termination_message(result: Result<i32, Error>) -> Result<i32, Error> {
    if let Err(error) = &result
        && let Ok(mut file) = std::fs::OpenOptions::new().write(true).truncate(true).open(TERMINATION_MESSAGE_PATH)
    {
        // Best effort: the message is on stderr (the container's log) either way.
        let _ = file.write_all(error.to_string().as_bytes());
    }
    result
}

fn exec_config() -> Result<ExecConfig, Error> {
    parse_exec_config(std::env::var_os(EXEC_CONFIG_ENV).as_deref())
}

fn published_image() -> Result<PublishedImage, Error> {
    read_published_image(Path::new(CONSUMER_IMAGE_CONFIG_PATH))
}

fn enter_rootfs(
    command: CommandLine,
    config: ExecConfig,
    published: &PublishedImage,
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
            image: published.config().cloned(),
            inherited_environment: std::env::vars_os().collect(),
            take_terminal,
        },
    )
}

#[cfg(test)]
mod tests {
    use sc_api::image_config::ImageConfig;

    use super::*;

    fn words(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    /// What PID 1 runs for this consumer argv (as the operator writes it) and image.
    fn argv_of(consumer_argv: &[&str], argv_source: &str, published: &PublishedImage) -> Result<Vec<OsString>, Error> {
        let Invocation::Run(run_words) = cli::parse(&words(consumer_argv))? else { panic!("not run: {consumer_argv:?}") };
        let config: ExecConfig = serde_json::from_str(&format!(r#"{{"argv":"{argv_source}"}}"#)).expect("config");
        let command = workload_command(&config, &run_words, published)?;
        Ok(std::iter::once(command.program).chain(command.args).collect())
    }

    fn nginx() -> PublishedImage {
        PublishedImage::Runtime {
            image_ref: "sha256:n".into(),
            config: ImageConfig {
                entrypoint: vec!["/docker-entrypoint.sh".into()],
                cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
                ..ImageConfig::default()
            },
        }
    }

    #[test]
    fn every_argv_mode_through_the_command_line() {
        let run = ["/.sc-bin/sc-exec", "run", "--"];
        let with = |rest: &[&'static str]| run.iter().chain(rest).copied().collect::<Vec<&str>>();
        assert_eq!(argv_of(&with(&["sh", "-c", "x"]), "command", &nginx()).expect("command"), words(&["sh", "-c", "x"]));
        assert_eq!(argv_of(&with(&["nginx-debug"]), "argsOnly", &nginx()).expect("args"), words(&["/docker-entrypoint.sh", "nginx-debug"]));
        assert_eq!(
            argv_of(&run, "imageDefault", &nginx()).expect("image default"),
            words(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
        );
    }

    #[test]
    fn an_argv_that_cannot_be_made_says_what_to_set() {
        let run = ["sc-exec", "run", "--"];
        let empty = PublishedImage::Runtime { image_ref: "sha256:e".into(), config: ImageConfig::default() };
        let error = argv_of(&run, "imageDefault", &empty).expect_err("nothing to run");
        assert_eq!(error.exit_code(), 78);
        assert!(error.to_string().contains("neither ENTRYPOINT nor CMD") && error.to_string().contains("set `command`"), "{error}");
        let unknown = PublishedImage::Unavailable { image_ref: "x".into(), reason: "the runtime has no verbose ImageStatus".into() };
        let error = argv_of(&["sc-exec", "run", "--", "-v"], "argsOnly", &unknown).expect_err("unknown entrypoint");
        assert!(error.to_string().contains("ENTRYPOINT is unknown") && error.to_string().contains("no verbose ImageStatus"), "{error}");
        assert_eq!(argv_of(&["sc-exec", "run", "--", "id"], "command", &unknown).expect("needs no image"), words(&["id"]));
        assert_eq!(argv_of(&["sc-exec", "run", "--", ""], "command", &unknown).expect_err("empty").exit_code(), 78);
    }

    #[test]
    fn the_wrapper_images_env_is_what_sc_exec_reads_as_unset() {
        use sc_api::consts::{WRAPPER_IMAGE_HOME, WRAPPER_IMAGE_PATH};
        let containerfile = include_str!("../../images/exec-wrapper.Containerfile");
        assert!(containerfile.contains(&format!("ENV PATH={WRAPPER_IMAGE_PATH} ")), "{containerfile}");
        assert!(containerfile.contains(&format!("HOME={WRAPPER_IMAGE_HOME}\n")), "{containerfile}");
    }
}
