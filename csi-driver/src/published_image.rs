//! The image config file of a publication: `<data-root>/control/<volume-id>/image-config.json`
//! ([`IMAGE_CONFIG_FILE_NAME`]), a [`PublishedImage`] as JSON, which the consumer reads at
//! `/.sc/control/image-config.json` through the read-only control bind.
//!
//! Kubelet starts the consumer's containers only after the publish succeeded, and the publish
//! returns only once this file is in place, so `sc-exec` always finds it. It is written once per
//! publication, durably and atomically (a temporary file, fsynced, renamed, the directory
//! fsynced): a plugin killed, or a node losing power, leaves no file or the whole one, and a
//! consumer that restarts after a plugin restart reads the same file again. Mode 0444: nothing,
//! not even the plugin, changes it in place.

use std::io;
use std::path::{Path, PathBuf};

use sc_api::image_config::{IMAGE_CONFIG_FILE_NAME, PublishedImage};

use crate::sys::System;

/// The file's mode: readable by everyone who can reach the control directory, writable by none.
pub const IMAGE_CONFIG_MODE: u32 = 0o444;

/// The image config file in a publication's control directory.
pub fn image_config_path(control_dir: &Path) -> PathBuf {
    control_dir.join(IMAGE_CONFIG_FILE_NAME)
}

fn temporary_path(control_dir: &Path) -> PathBuf {
    control_dir.join(format!(".{IMAGE_CONFIG_FILE_NAME}.tmp"))
}

/// Writes `image` into the control directory (which must exist), replacing any earlier file.
pub fn write(system: &dyn System, control_dir: &Path, image: &PublishedImage) -> io::Result<()> {
    let body = serde_json::to_vec(image).map_err(io::Error::other)?;
    let temporary = temporary_path(control_dir);
    // A temporary file left by a crash mid-write is read-only (and a symlink there is removed,
    // never followed): start from a new one.
    remove_if_present(system, &temporary)?;
    let path = image_config_path(control_dir);
    system.write_file_durably(&path, &temporary, &body, IMAGE_CONFIG_MODE).map_err(|error| annotate(error, "writing", &path))
}

/// Reads the file back: `None` when there is none. A file that does not parse is an
/// `InvalidData` error naming it.
pub fn read(system: &dyn System, control_dir: &Path) -> io::Result<Option<PublishedImage>> {
    let path = image_config_path(control_dir);
    let bytes = match system.read_file(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(annotate(error, "reading", &path)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, format!("{} is not an image config file: {error}", path.display())))
}

/// Removes the file (and a temporary one), so that the control directory can be removed.
pub fn remove(system: &dyn System, control_dir: &Path) -> io::Result<()> {
    remove_if_present(system, &temporary_path(control_dir))?;
    remove_if_present(system, &image_config_path(control_dir))
}

fn remove_if_present(system: &dyn System, path: &Path) -> io::Result<()> {
    match system.remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(annotate(error, "removing", path)),
        _ => Ok(()),
    }
}

fn annotate(error: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{action} {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use sc_api::image_config::ImageConfig;

    use super::*;
    use crate::sys::RealSystem;

    fn runtime_image() -> PublishedImage {
        PublishedImage::Runtime {
            image_ref: "docker.io/library/python@sha256:0123".into(),
            config: ImageConfig {
                cmd: vec!["python3".into()],
                env: vec!["PATH=/opt/conda/bin:/usr/bin".into()],
                user: "jovyan".into(),
                working_dir: "/home/jovyan".into(),
                ..ImageConfig::default()
            },
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn the_file_is_written_read_only_and_reads_back_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(&RealSystem::default(), dir.path()).expect("read"), None, "no file yet");
        write(&RealSystem::default(), dir.path(), &runtime_image()).expect("write");
        let path = image_config_path(dir.path());
        assert_eq!(path, dir.path().join("image-config.json"));
        assert_eq!(mode(&path), IMAGE_CONFIG_MODE);
        assert_eq!(read(&RealSystem::default(), dir.path()).expect("read"), Some(runtime_image()));
        let text = std::fs::read_to_string(&path).expect("read text");
        assert!(text.starts_with(r#"{"source":"runtime","imageRef":"docker.io/library/python@sha256:0123""#), "{text}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("list").map(|entry| entry.expect("entry").file_name()).collect();
        assert_eq!(names, ["image-config.json"], "no temporary file is left");
    }

    #[test]
    fn a_new_write_replaces_the_file_and_a_crashed_writes_leftover() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&RealSystem::default(), dir.path(), &runtime_image()).expect("write");
        // A crash between create and rename left a read-only temporary file.
        std::fs::write(temporary_path(dir.path()), b"{\"half").expect("leftover");
        std::fs::set_permissions(temporary_path(dir.path()), std::fs::Permissions::from_mode(0o444)).expect("chmod");
        let unavailable = PublishedImage::Unavailable { image_ref: "sha256:1".into(), reason: "no runtime socket".into() };
        write(&RealSystem::default(), dir.path(), &unavailable).expect("write over");
        assert_eq!(read(&RealSystem::default(), dir.path()).expect("read"), Some(unavailable));
        assert!(!temporary_path(dir.path()).exists());
        remove(&RealSystem::default(), dir.path()).expect("remove");
        remove(&RealSystem::default(), dir.path()).expect("removing twice is fine");
        std::fs::remove_dir(dir.path()).expect("the directory is empty again");
    }

    #[test]
    fn a_file_that_does_not_parse_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(image_config_path(dir.path()), b"garbage").expect("write");
        let error = read(&RealSystem::default(), dir.path()).expect_err("garbage");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("image-config.json is not an image config file"), "{error}");
    }

    #[test]
    fn a_symlink_in_place_of_the_temporary_file_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, b"keep").expect("write");
        std::os::unix::fs::symlink(&elsewhere, temporary_path(dir.path())).expect("symlink");
        write(&RealSystem::default(), dir.path(), &runtime_image()).expect("the link is removed, not followed");
        assert_eq!(std::fs::read(&elsewhere).expect("read"), b"keep");
        assert_eq!(read(&RealSystem::default(), dir.path()).expect("read"), Some(runtime_image()));
    }
}
