//! Records the git commit the plugin is built from, for `kubectl sc version`.
//!
//! `KUBECTL_SC_GIT_SHA` in the build environment wins (image builds run without `.git`);
//! otherwise `git rev-parse` is asked; when neither works the version says `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=KUBECTL_SC_GIT_SHA");
    let sha = std::env::var("KUBECTL_SC_GIT_SHA")
        .ok()
        .filter(|sha| !sha.trim().is_empty())
        .or_else(git_head_sha)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=KUBECTL_SC_GIT_SHA={}", sha.trim());
    watch_git_head();
}

fn git_head_sha() -> Option<String> {
    let output = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok().map(|sha| sha.trim().to_owned()).filter(|sha| !sha.is_empty())
}

/// Rebuild when HEAD moves. Only existing files are watched: cargo treats a missing watched file
/// as always changed, which would rebuild the plugin on every build.
fn watch_git_head() {
    let Ok(git_dir) = Command::new("git").args(["rev-parse", "--git-dir"]).output() else {
        return;
    };
    let git_dir = String::from_utf8_lossy(&git_dir.stdout).trim().to_owned();
    if git_dir.is_empty() {
        return;
    }
    let git_dir = Path::new(&git_dir);
    let head = git_dir.join("HEAD");
    let mut watched = vec![head.clone(), git_dir.join("packed-refs")];
    if let Ok(head_text) = std::fs::read_to_string(&head)
        && let Some(reference) = head_text.trim().strip_prefix("ref: ")
    {
        watched.push(git_dir.join(reference));
    }
    for path in watched.into_iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
