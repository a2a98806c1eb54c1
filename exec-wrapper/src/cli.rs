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
    /// `sc-exec layer diff`: print the user's layer's changes against the image as JSON
    /// (`sc_api::layer_diff::DiffReport`).
    LayerDiff { upper: PathBuf, opaque_dirs: Option<PathBuf>, lower: PathBuf },
    /// `sc-exec layer facts`: print what the image has at the listed paths as JSON
    /// (`sc_api::layer_diff::FactsReport`).
    LayerFacts { paths: PathBuf, root: PathBuf },
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
  sc-exec layer diff --upper <dir> [--opaque-dirs <file>] [--lower <dir>]
                                       print the upper's changes against the image at <dir>
                                       (default /) as JSON; <file> lists the opaque directories
  sc-exec layer facts --paths <file> [--root <dir>]
                                       print type, size, mode, SHA-256 and link target of the
                                       listed paths in the image at <dir> (default /) as JSON
                                       (path lists: absolute paths, each followed by a NUL byte)
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
        Some("layer") => layer(mode_args),
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

/// Where `sc-exec layer` looks for the image when not told: its own root, as it runs in a pod
/// whose root filesystem is the image.
pub const DEFAULT_IMAGE_ROOT: &str = "/";

/// `sc-exec layer diff ...` and `sc-exec layer facts ...`.
fn layer(args: &[OsString]) -> Result<Invocation, Error> {
    let usage = || {
        Error::Usage(
            "`sc-exec layer` takes `diff --upper <dir> [--opaque-dirs <file>] [--lower <dir>]` or \
             `facts --paths <file> [--root <dir>]`"
                .into(),
        )
    };
    let Some((action, options)) = args.split_first() else {
        return Err(usage());
    };
    match action.to_str() {
        Some("diff") => {
            let mut values = options_of("layer diff", options, &["--upper", "--opaque-dirs", "--lower"])?;
            let upper = values
                .remove("--upper")
                .ok_or_else(|| Error::Usage("`sc-exec layer diff` needs `--upper <dir>`, the overlay's upper directory".into()))?;
            Ok(Invocation::LayerDiff {
                upper,
                opaque_dirs: values.remove("--opaque-dirs"),
                lower: values.remove("--lower").unwrap_or_else(|| PathBuf::from(DEFAULT_IMAGE_ROOT)),
            })
        }
        Some("facts") => {
            let mut values = options_of("layer facts", options, &["--paths", "--root"])?;
            let paths = values
                .remove("--paths")
                .ok_or_else(|| Error::Usage("`sc-exec layer facts` needs `--paths <file>`, the NUL-separated paths to look up".into()))?;
            Ok(Invocation::LayerFacts { paths, root: values.remove("--root").unwrap_or_else(|| PathBuf::from(DEFAULT_IMAGE_ROOT)) })
        }
        _ => Err(usage()),
    }
}

/// `--name value` or `--name=value` options, each of `known` at most once, each value a
/// non-empty path.
fn options_of(
    command: &str,
    args: &[OsString],
    known: &[&'static str],
) -> Result<std::collections::BTreeMap<&'static str, PathBuf>, Error> {
    let mut values = std::collections::BTreeMap::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let bytes = arg.as_bytes();
        let (name, inline_value) = match bytes.iter().position(|&byte| byte == b'=') {
            Some(equals) => (&bytes[..equals], Some(OsStr::from_bytes(&bytes[equals + 1..]))),
            None => (bytes, None),
        };
        let Some(&option) = known.iter().find(|option| option.as_bytes() == name) else {
            return Err(Error::Usage(format!("`sc-exec {command}` does not take {arg:?}; it takes {}", known.join(", "))));
        };
        let value = match inline_value {
            Some(value) => value,
            None => rest.next().map(OsString::as_os_str).unwrap_or_default(),
        };
        if value.is_empty() {
            return Err(Error::Usage(format!("`sc-exec {command}`: {option} needs a path after it")));
        }
        if values.insert(option, PathBuf::from(value)).is_some() {
            return Err(Error::Usage(format!("`sc-exec {command}`: {option} is given twice")));
        }
    }
    Ok(values)
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
    fn layer_diff_and_facts_take_their_options_in_either_form() {
        assert_eq!(
            parse(&argv(&["sc-exec", "layer", "diff", "--upper", "/upper"])).expect("parses"),
            Invocation::LayerDiff { upper: "/upper".into(), opaque_dirs: None, lower: "/".into() }
        );
        assert_eq!(
            parse(&argv(&["sc-exec", "layer", "diff", "--lower=/image", "--opaque-dirs", "/o", "--upper=/u"])).expect("parses"),
            Invocation::LayerDiff { upper: "/u".into(), opaque_dirs: Some("/o".into()), lower: "/image".into() }
        );
        assert_eq!(
            parse(&argv(&["sc-exec", "layer", "facts", "--paths", "/p"])).expect("parses"),
            Invocation::LayerFacts { paths: "/p".into(), root: "/".into() }
        );
        assert_eq!(
            parse(&argv(&["sc-exec", "layer", "facts", "--root", "/r", "--paths=/p"])).expect("parses"),
            Invocation::LayerFacts { paths: "/p".into(), root: "/r".into() }
        );
    }

    #[test]
    fn layer_refuses_what_it_cannot_use_and_says_what_it_takes() {
        let cases: &[(&[&str], &str)] = &[
            (&["sc-exec", "layer"], "takes `diff --upper"),
            (&["sc-exec", "layer", "export"], "takes `diff --upper"),
            (&["sc-exec", "layer", "diff"], "needs `--upper <dir>`"),
            (&["sc-exec", "layer", "diff", "--upper"], "--upper needs a path"),
            (&["sc-exec", "layer", "diff", "--upper="], "--upper needs a path"),
            (&["sc-exec", "layer", "diff", "--upper", "/a", "--upper", "/b"], "given twice"),
            (&["sc-exec", "layer", "diff", "--upper", "/a", "--root", "/"], "does not take \"--root\""),
            (&["sc-exec", "layer", "facts", "--root", "/"], "needs `--paths <file>`"),
        ];
        for (words, message) in cases {
            let error = parse(&argv(words)).expect_err("refused");
            assert!(error.to_string().contains(message), "{words:?}: {error}");
            assert_eq!(error.exit_code(), 64);
        }
    }

    #[test]
    fn empty_argv_is_rejected() {
        assert!(parse(&[]).is_err());
    }
}
