//! The plugin's version line.

/// `<crate version> (git <commit>)`, as `--version` prints it after the binary name.
pub const VERSION_LINE_SHORT: &str = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("KUBECTL_SC_GIT_SHA"), ")");

/// What `kubectl sc version` prints.
pub fn version_line() -> String {
    format!("kubectl-sc version {VERSION_LINE_SHORT}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_crate_version_and_the_commit() {
        let line = version_line();
        assert!(line.starts_with(&format!("kubectl-sc version {} (git ", env!("CARGO_PKG_VERSION"))), "{line}");
        assert!(line.ends_with(')') && !line.contains("(git )"), "{line}");
    }
}
