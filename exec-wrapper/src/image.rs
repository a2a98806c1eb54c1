//! The image's own process defaults (`Entrypoint`, `Cmd`, `Env`, `User`, `WorkingDir`), as the
//! node plugin published them in the volume's control directory before the consumer started.

use std::io::ErrorKind;
use std::path::Path;

use sc_api::image_config::PublishedImage;

use crate::error::Error;

/// Parses the published file. Garbage is an error, never "no config": running a command the image
/// never asked for would be worse than not starting.
pub fn parse_published_image(path: &Path, text: &str) -> Result<PublishedImage, Error> {
    serde_json::from_str(text)
        .map_err(|error| Error::ImageConfig { path: path.to_path_buf(), message: format!("it is not a valid image config JSON ({error})") })
}

/// Reads the published file. A missing one means a node plugin from before image configs: the
/// image's config is then unknown, which only matters when the template leaves the command to the
/// image.
pub fn read_published_image(path: &Path) -> Result<PublishedImage, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_published_image(path, &text),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(PublishedImage::Unavailable {
            image_ref: String::new(),
            reason: format!(
                "the CSI node plugin published no image config at {} (a node plugin older than this sc-exec); upgrade the node plugin",
                path.display()
            ),
        }),
        Err(error) => Err(Error::ImageConfig { path: path.to_path_buf(), message: format!("reading it failed ({error})") }),
    }
}

#[cfg(test)]
mod tests {
    use sc_api::image_config::ImageConfig;

    use super::*;

    #[test]
    fn a_published_config_is_read() {
        let directory = tempfile::tempdir().expect("tmp");
        let path = directory.path().join("image-config.json");
        std::fs::write(&path, r#"{"source":"runtime","imageRef":"sha256:1","config":{"Cmd":["sh"],"User":"jovyan"}}"#).expect("write");
        let published = read_published_image(&path).expect("reads");
        assert_eq!(published.config(), Some(&ImageConfig { cmd: vec!["sh".into()], user: "jovyan".into(), ..ImageConfig::default() }));
    }

    #[test]
    fn a_missing_file_is_an_unknown_config_that_says_why() {
        let directory = tempfile::tempdir().expect("tmp");
        let published = read_published_image(&directory.path().join("image-config.json")).expect("missing is not an error");
        assert_eq!(published.config(), None);
        let PublishedImage::Unavailable { reason, .. } = published else { panic!("unavailable") };
        assert!(reason.contains("upgrade the node plugin"), "{reason}");
    }

    #[test]
    fn a_garbled_file_is_a_config_error_naming_the_file() {
        let error = parse_published_image(Path::new("/.sc/control/image-config.json"), "{\"source\":").expect_err("garbled");
        assert_eq!(error.exit_code(), 78);
        assert!(error.to_string().contains("/.sc/control/image-config.json") && error.to_string().contains("not a valid"), "{error}");
        let directory = tempfile::tempdir().expect("tmp");
        let unreadable = read_published_image(directory.path()).expect_err("a directory");
        assert!(unreadable.to_string().contains("reading it failed"), "{unreadable}");
    }
}
