//! What `sc-exec` was asked to do, decided from its argv alone (pure, so every form is tested).
//!
//! Invoked under its own name (`sc-exec`, `/.sc-bin/sc-exec`) the first argument picks a mode;
//! invoked through a symlink of the farm (`ls`, `/usr/bin/vim`, ...) the whole argv is a command
//! to run inside the rootfs, exactly as `kubectl exec` passed it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::error::Error;

/// File name of the binary; any other argv[0] means "called through a farm symlink".
pub const BINARY_NAME: &str = "sc-exec";

/// Hidden mode used by PID 1 to start the workload in a fresh process (so PID 1 itself never
/// enters the rootfs nor drops its privileges: it keeps maintaining the symlink farm).
pub const START_WORKLOAD_MODE: &str = "__start-workload";

/// A command line to run inside the rootfs: `argv[0]` (a name looked up through `PATH`, or a path)
/// and the arguments after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// Everything `sc-exec` can be asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// `sc-exec run -- [words...]`: the consumer's PID 1. The words are the template's `command`
    /// and `args` as kubelet expanded them; with the image's `Entrypoint` and `Cmd` they make the
    /// workload's argv (`sc_api::process::workload_argv`), so none at all is valid.
    Run(Vec<OsString>),
    /// The child PID 1 starts: enter the rootfs and exec the workload in its working directory.
    StartWorkload(CommandLine),
    /// `sc-exec <cmd>` or a farm symlink: run a command inside the rootfs, keeping the cwd.
    Exec(CommandLine),
    /// `sc-exec pause`: the provider's idle process.
    Pause,
    /// `sc-exec install <dir>`: copy this binary into `<dir>`.
    Install { dir: PathBuf },
    /// `sc-exec version`.
    Version,
    /// `sc-exec help`, `--help`, `-h`, or no arguments.
    Help,
}

/// Usage text printed by `sc-exec help`.
pub const USAGE: &str = "\
usage:
  sc-exec run -- [command] [args...]   run the workload inside /.sc/rootfs as PID 1 (with the
                                       image's ENTRYPOINT/CMD as the pod template leaves them)
  sc-exec [--] <command> [args...]     run a command inside /.sc/rootfs (kubectl exec)
  sc-exec pause                        block until SIGTERM/SIGINT, then exit 0
  sc-exec install <dir>                copy this binary to <dir>/sc-exec
  sc-exec version                      print the version
A symlink to sc-exec named like a program (ls, /usr/bin/vim) runs that program inside the rootfs.";

/// Decides the invocation from the full argv (argv[0] included).
pub fn parse(argv: &[OsString]) -> Result<Invocation, Error> {
    let Some((argv0, rest)) = argv.split_first() else {
        return Err(Error::Usage("empty argument vector: argv[0] is missing".into()));
    };
    if !invoked_as_wrapper(argv0) {
        return Ok(Invocation::Exec(CommandLine { program: argv0.clone(), args: rest.to_vec() }));
    }
    let Some((mode, mode_args)) = rest.split_first() else {
        return Ok(Invocation::Help);
    };
    match mode.to_str() {
        Some("run") => words_after_dash_dash("run", mode_args).map(|words| Invocation::Run(words.to_vec())),
        Some(START_WORKLOAD_MODE) => Ok(Invocation::StartWorkload(command_after_dash_dash(START_WORKLOAD_MODE, mode_args)?)),
        Some("pause") => no_more_args("pause", mode_args).map(|()| Invocation::Pause),
        Some("version" | "--version" | "-V") => no_more_args("version", mode_args).map(|()| Invocation::Version),
        Some("help" | "--help" | "-h") => Ok(Invocation::Help),
        Some("install") => match mode_args {
            [dir] if !dir.is_empty() => Ok(Invocation::Install { dir: PathBuf::from(dir) }),
            _ => Err(Error::Usage(
                "`sc-exec install` takes exactly one argument, the directory to copy sc-exec into \
                 (for example `sc-exec install /.sc-bin`)"
                    .into(),
            )),
        },
        Some("--") => {
            command_line(mode_args).map(Invocation::Exec).ok_or_else(|| Error::Usage("`sc-exec --` needs a command after `--`".into()))
        }
        _ => Ok(Invocation::Exec(CommandLine { program: mode.clone(), args: mode_args.to_vec() })),
    }
}

/// True when argv[0] names this binary itself rather than a farm symlink.
fn invoked_as_wrapper(argv0: &OsStr) -> bool {
    let bytes = argv0.as_bytes();
    let file_name = bytes.rsplit(|&byte| byte == b'/').next().unwrap_or(bytes);
    file_name == BINARY_NAME.as_bytes()
}

fn command_line(args: &[OsString]) -> Option<CommandLine> {
    let (program, rest) = args.split_first()?;
    if program.is_empty() {
        return None;
    }
    Some(CommandLine { program: program.clone(), args: rest.to_vec() })
}

/// The words after the mandatory `--` (so that options of the workload can never be taken for
/// ours).
fn words_after_dash_dash<'a>(mode: &str, args: &'a [OsString]) -> Result<&'a [OsString], Error> {
    match args.split_first() {
        Some((dash_dash, words)) if dash_dash == "--" => Ok(words),
        _ => Err(Error::Usage(format!(
            "`sc-exec {mode}` expects `-- <command> [args...]` (for example `sc-exec {mode} -- \
             /bin/sh -c 'sleep infinity'`)"
        ))),
    }
}

fn command_after_dash_dash(mode: &str, args: &[OsString]) -> Result<CommandLine, Error> {
    command_line(words_after_dash_dash(mode, args)?)
        .ok_or_else(|| Error::Usage(format!("`sc-exec {mode} --` needs the workload's command after `--`")))
}

fn no_more_args(mode: &str, args: &[OsString]) -> Result<(), Error> {
    if args.is_empty() { Ok(()) } else { Err(Error::Usage(format!("`sc-exec {mode}` takes no arguments, got {args:?}"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn command(words: &[&str]) -> CommandLine {
        let all = argv(words);
        CommandLine { program: all[0].clone(), args: all[1..].to_vec() }
    }

    #[test]
    fn run_takes_the_words_after_dash_dash_even_none() {
        assert_eq!(
            parse(&argv(&["/.sc-bin/sc-exec", "run", "--", "nginx", "-g", "daemon off;"])).expect("parses"),
            Invocation::Run(argv(&["nginx", "-g", "daemon off;"]))
        );
        // The template sets neither command nor args: the image's ENTRYPOINT and CMD run.
        assert_eq!(parse(&argv(&["sc-exec", "run", "--"])).expect("parses"), Invocation::Run(Vec::new()));
        // Args only: the words are kubelet's expansion of `args`, options included.
        assert_eq!(parse(&argv(&["sc-exec", "run", "--", "-v", "--"])).expect("parses"), Invocation::Run(argv(&["-v", "--"])));
    }

    #[test]
    fn run_without_dash_dash_is_a_usage_error() {
        let missing_dash = parse(&argv(&["sc-exec", "run", "nginx"])).expect_err("needs --");
        assert!(missing_dash.to_string().contains("expects `-- <command>"), "{missing_dash}");
        assert_eq!(missing_dash.exit_code(), 64);
        let missing_command = parse(&argv(&["sc-exec", START_WORKLOAD_MODE, "--"])).expect_err("the child needs an argv");
        assert!(missing_command.to_string().contains("needs the workload's command"));
    }

    #[test]
    fn a_bare_command_is_exec_inside_the_rootfs() {
        assert_eq!(parse(&argv(&["sc-exec", "ls", "-l", "/"])).expect("parses"), Invocation::Exec(command(&["ls", "-l", "/"])));
        // `--` lets a user run a program that is named like one of our modes.
        assert_eq!(parse(&argv(&["sc-exec", "--", "pause", "x"])).expect("parses"), Invocation::Exec(command(&["pause", "x"])));
        assert!(parse(&argv(&["sc-exec", "--"])).is_err());
    }

    #[test]
    fn a_farm_symlink_runs_its_own_name_with_all_arguments() {
        assert_eq!(
            parse(&argv(&["/usr/bin/tar", "cf", "-", "run"])).expect("parses"),
            Invocation::Exec(command(&["/usr/bin/tar", "cf", "-", "run"]))
        );
        assert_eq!(parse(&argv(&["vim"])).expect("parses"), Invocation::Exec(command(&["vim"])));
    }

    #[test]
    fn simple_modes_parse_and_reject_extra_arguments() {
        assert_eq!(parse(&argv(&["sc-exec", "pause"])).expect("parses"), Invocation::Pause);
        assert_eq!(parse(&argv(&["sc-exec", "version"])).expect("parses"), Invocation::Version);
        assert_eq!(parse(&argv(&["sc-exec"])).expect("parses"), Invocation::Help);
        assert_eq!(parse(&argv(&["sc-exec", "--help"])).expect("parses"), Invocation::Help);
        assert!(parse(&argv(&["sc-exec", "pause", "now"])).is_err());
        assert!(parse(&argv(&["sc-exec", "version", "x"])).is_err());
    }

    #[test]
    fn install_needs_exactly_one_directory() {
        assert_eq!(
            parse(&argv(&["sc-exec", "install", "/.sc-bin"])).expect("parses"),
            Invocation::Install { dir: PathBuf::from("/.sc-bin") }
        );
        for bad in [&["sc-exec", "install"][..], &["sc-exec", "install", "a", "b"], &["sc-exec", "install", ""]] {
            let error = parse(&argv(bad)).expect_err("bad install");
            assert!(error.to_string().contains("exactly one argument"), "{error}");
        }
    }

    #[test]
    fn start_workload_mode_is_parsed_like_run() {
        assert_eq!(
            parse(&argv(&["sc-exec", START_WORKLOAD_MODE, "--", "sleep", "1"])).expect("parses"),
            Invocation::StartWorkload(command(&["sleep", "1"]))
        );
    }

    #[test]
    fn empty_argv_is_rejected() {
        assert!(parse(&[]).is_err());
    }
}
