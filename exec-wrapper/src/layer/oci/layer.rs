//! The upper's entries as one OCI image layer (`application/vnd.oci.image.layer.v1.tar+gzip`).
//!
//! The tar is written in the entries' order (the walk's: sorted by path, parents first), with GNU
//! headers as the `tar` crate writes them (long names and link targets in `././@LongLink`
//! entries, numbers too large for octal in base-256), which GNU tar, Go's `archive/tar`
//! (containerd, the registry tools) and the `tar` crate all read. Nothing in it depends on when or
//! where it is written: uname/gname empty, no atime/ctime, gzip header without mtime or file name,
//! one compression level. The same entries give the same bytes, so the same digests.
//!
//! Both digests are computed while streaming, so a layer of any size is written with a fixed
//! amount of memory: the uncompressed tar's (the config's `diff_id`) and the compressed blob's
//! (the manifest's layer digest, the registry's key).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

use flate2::{Compression, GzBuilder};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, openat2};
use sha2::{Digest, Sha256};
use tar::{Builder, EntryType, Header};

use super::format_sha256;
use crate::layer::{UpperEntry, UpperKind};

/// A layer entry named `.wh.<name>` deletes `<name>` of the layers below (OCI image-layer spec).
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// An entry of this name inside a directory hides everything the layers below hold in it.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Mode of the whiteout files, as moby writes them for an overlay upper's 0/0 devices: nothing
/// reads a whiteout's mode, so any fixed value keeps layers reproducible.
const WHITEOUT_MODE: u32 = 0o600;
/// zlib's default level: a change-sized layer is small, so compressing harder buys little. Fixed,
/// because the compressed bytes (and so the blob digest) depend on it.
const COMPRESSION_LEVEL: u32 = 6;
/// Permission, set-id and sticky bits: what a tar header's mode holds (the type is its own field).
const MODE_BITS: u32 = 0o7777;

/// What [`write_layer`] wrote: the digests the config and the manifest name the layer by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// `sha256:<hex>` of the uncompressed tar: the config's `rootfs.diff_ids` entry.
    pub diff_id: String,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    /// `sha256:<hex>` of the compressed blob as written to `out`: the manifest's layer digest.
    pub blob_digest: String,
    /// Bytes of the compressed blob: the manifest's layer size.
    pub blob_size: u64,
    /// Sockets of the upper, left out: a tar cannot hold one, and a socket file is useless without
    /// the process that listened on it.
    pub skipped_sockets: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(
        "cannot put {path} into the layer: the path {problem}. Entries of the upper are absolute paths inside the rootfs \
         (/etc/hosts), as the walk of the upper lists them."
    )]
    InvalidPath { path: PathBuf, problem: &'static str },

    #[error(
        "cannot put {path} into the layer: a name starting with `{WHITEOUT_PREFIX}` marks a deletion in an OCI image layer, so \
         an image would read this file as one. Rename it, or leave it out of the export."
    )]
    ReservedName { path: PathBuf },

    #[error(
        "cannot put the hard link {path} into the layer: its target {target} is not a regular file written before it. The \
         walk lists a file's first name before its other names; was the target left out of the export?"
    )]
    HardLinkTargetMissing { path: PathBuf, target: PathBuf },

    #[error(
        "refusing to read {source_path} (for {path}): it, or a directory on its way, is a symbolic link now, so the upper \
         changed after it was walked. Stop the StoppableContainer and export again."
    )]
    SourceIsSymlink { path: PathBuf, source_path: PathBuf },

    #[error("cannot open {source_path} (for {path}) to put it into the layer: {source}")]
    OpenSource { path: PathBuf, source_path: PathBuf, source: io::Error },

    #[error(
        "refusing to read {source_path} (for {path}): it is a {found} now, not the regular file the walk found, so the upper \
         changed after it was walked. Stop the StoppableContainer and export again."
    )]
    SourceNotRegular { path: PathBuf, source_path: PathBuf, found: &'static str },

    #[error(
        "{source_path} (for {path}) is {found} bytes now, not the {expected} the walk found: the upper changed after it was \
         walked. Stop the StoppableContainer and export again."
    )]
    SourceSizeChanged { path: PathBuf, source_path: PathBuf, expected: u64, found: u64 },

    #[error(
        "{source_path} (for {path}) changed size while it was read (the walk found {expected} bytes): the upper is being \
         written to. Stop the StoppableContainer and export again."
    )]
    SourceChangedWhileRead { path: PathBuf, source_path: PathBuf, expected: u64 },

    #[error("cannot read {source_path} (for {path}) to put it into the layer: {source}")]
    ReadSource { path: PathBuf, source_path: PathBuf, source: io::Error },

    #[error("cannot write the layer entry for {path}: {source}")]
    Write { path: PathBuf, source: io::Error },

    #[error("cannot finish writing the layer: {source}")]
    Finish { source: io::Error },
}

/// Writes `entries`, in their order, as a gzip-compressed tar to `out`, and returns its digests.
///
/// Regular files are read from their `source` (not following a symbolic link anywhere on the way:
/// the upper is the tenant's, and a file replaced by a link since the walk must not make this read
/// a file outside it). The root directory itself is not written: an image's layers never carry
/// `/`, and an opaque marker there would hide the whole image.
pub fn write_layer(entries: &[UpperEntry], out: impl Write) -> Result<LayerDigests, LayerError> {
    let blob = DigestingWriter::new(out);
    let gzip = GzBuilder::new().mtime(0).write(blob, Compression::new(COMPRESSION_LEVEL));
    let mut archive = Builder::new(DigestingWriter::new(gzip));
    let mut written = WrittenSoFar::default();
    for entry in entries {
        append_entry(&mut archive, entry, &mut written)?;
    }
    let (gzip, tar) = archive.into_inner().map_err(|source| LayerError::Finish { source })?.finish();
    let (mut out, blob) = gzip.finish().map_err(|source| LayerError::Finish { source })?.finish();
    out.flush().map_err(|source| LayerError::Finish { source })?;
    Ok(LayerDigests {
        diff_id: tar.digest,
        tar_size: tar.size,
        blob_digest: blob.digest,
        blob_size: blob.size,
        skipped_sockets: written.skipped_sockets,
    })
}

/// What later entries depend on: the files a hard link may name, the sockets left out.
#[derive(Default)]
struct WrittenSoFar {
    regular_files: HashSet<PathBuf>,
    skipped_sockets: Vec<PathBuf>,
}

fn append_entry<W: Write>(archive: &mut Builder<W>, entry: &UpperEntry, written: &mut WrittenSoFar) -> Result<(), LayerError> {
    let Some(name) = archive_path(&entry.path)? else {
        return Ok(());
    };
    refuse_reserved_name(&entry.path, &name)?;
    let write_error = |source| LayerError::Write { path: entry.path.clone(), source };
    match &entry.kind {
        UpperKind::File { size, source } => {
            append_file(archive, entry, &name, *size, source)?;
            written.regular_files.insert(name);
        }
        UpperKind::HardLink { target } => {
            let target_name = match archive_path(target)? {
                Some(target_name) if written.regular_files.contains(&target_name) => target_name,
                _ => return Err(LayerError::HardLinkTargetMissing { path: entry.path.clone(), target: target.clone() }),
            };
            let mut header = header_for(entry, EntryType::Link, entry.mode);
            archive.append_link(&mut header, &name, &target_name).map_err(write_error)?;
        }
        UpperKind::Directory { opaque } => {
            let mut header = header_for(entry, EntryType::Directory, entry.mode);
            archive.append_data(&mut header, directory_name(&name), io::empty()).map_err(write_error)?;
            if *opaque {
                // Right after the directory, before anything in it: a reader applying entries in
                // order hides the lower directory's content first, then adds the upper's.
                let mut marker = header_for(entry, EntryType::Regular, entry.mode & 0o777);
                archive.append_data(&mut marker, name.join(OPAQUE_MARKER), io::empty()).map_err(write_error)?;
            }
        }
        UpperKind::Symlink { target } => {
            let mut header = header_for(entry, EntryType::Symlink, entry.mode);
            archive.append_link(&mut header, &name, target).map_err(write_error)?;
        }
        UpperKind::CharDevice { major, minor } => append_device(archive, entry, &name, EntryType::Char, *major, *minor)?,
        UpperKind::BlockDevice { major, minor } => append_device(archive, entry, &name, EntryType::Block, *major, *minor)?,
        UpperKind::Fifo => {
            let mut header = header_for(entry, EntryType::Fifo, entry.mode);
            archive.append_data(&mut header, &name, io::empty()).map_err(write_error)?;
        }
        UpperKind::Socket => written.skipped_sockets.push(entry.path.clone()),
        UpperKind::Whiteout => append_whiteout(archive, entry, &name)?,
    }
    Ok(())
}

/// The entry's name inside the tar: relative (`etc/hosts`), normal components only; `None` for
/// the root directory.
fn archive_path(path: &Path) -> Result<Option<PathBuf>, LayerError> {
    let invalid = |problem| LayerError::InvalidPath { path: path.to_path_buf(), problem };
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err(invalid("is not absolute"));
    }
    let mut name = PathBuf::new();
    for component in components {
        match component {
            Component::Normal(part) => name.push(part),
            _ => return Err(invalid("has a `..` component")),
        }
    }
    Ok(if name.as_os_str().is_empty() { None } else { Some(name) })
}

/// A directory's name with the trailing `/` tar gives directories.
fn directory_name(name: &Path) -> PathBuf {
    let mut text = OsString::from(name.as_os_str());
    text.push("/");
    PathBuf::from(text)
}

fn refuse_reserved_name(path: &Path, name: &Path) -> Result<(), LayerError> {
    let file_name = name.file_name().map(|file_name| file_name.as_encoded_bytes()).unwrap_or_default();
    if file_name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
        return Err(LayerError::ReservedName { path: path.to_path_buf() });
    }
    Ok(())
}

/// An empty regular file `.wh.<name>` beside the deleted name, with the owner and mtime of the
/// upper's 0/0 device (as moby writes it).
fn append_whiteout<W: Write>(archive: &mut Builder<W>, entry: &UpperEntry, name: &Path) -> Result<(), LayerError> {
    let mut whiteout_name = OsString::from(WHITEOUT_PREFIX);
    whiteout_name.push(name.file_name().unwrap_or_default());
    let whiteout = name.with_file_name(whiteout_name);
    let mut header = header_for(entry, EntryType::Regular, WHITEOUT_MODE);
    archive.append_data(&mut header, whiteout, io::empty()).map_err(|source| LayerError::Write { path: entry.path.clone(), source })
}

fn append_device<W: Write>(
    archive: &mut Builder<W>,
    entry: &UpperEntry,
    name: &Path,
    entry_type: EntryType,
    major: u32,
    minor: u32,
) -> Result<(), LayerError> {
    let write_error = |source| LayerError::Write { path: entry.path.clone(), source };
    let mut header = header_for(entry, entry_type, entry.mode);
    header.set_device_major(major).map_err(write_error)?;
    header.set_device_minor(minor).map_err(write_error)?;
    archive.append_data(&mut header, name, io::empty()).map_err(write_error)
}

fn append_file<W: Write>(archive: &mut Builder<W>, entry: &UpperEntry, name: &Path, size: u64, source: &Path) -> Result<(), LayerError> {
    let file = open_source(entry, size, source)?;
    let mut failure = None;
    let content = SourceReader { file, expected: size, remaining: size, failure: &mut failure };
    let mut header = header_for(entry, EntryType::Regular, entry.mode);
    header.set_size(size);
    let result = archive.append_data(&mut header, name, content);
    let (path, source_path) = (entry.path.clone(), source.to_path_buf());
    match (result, failure) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(SourceFailure::Read(source))) => Err(LayerError::ReadSource { path, source_path, source }),
        (Err(_), Some(SourceFailure::SizeChanged)) => Err(LayerError::SourceChangedWhileRead { path, source_path, expected: size }),
        (Err(source), None) => Err(LayerError::Write { path, source }),
    }
}

/// Opens a file's content for reading, refusing a symbolic link anywhere on the way
/// (`RESOLVE_NO_SYMLINKS`, which `O_NOFOLLOW` alone gives only for the last component) and
/// anything that is no longer the regular file of `size` bytes the walk found. `O_NONBLOCK`: a
/// FIFO put in the file's place must fail the type check, not block the open.
fn open_source(entry: &UpperEntry, size: u64, source: &Path) -> Result<File, LayerError> {
    let (path, source_path) = (entry.path.clone(), source.to_path_buf());
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let file = match openat2(AT_FDCWD, source, how) {
        Ok(fd) => File::from(fd),
        Err(Errno::ELOOP) => return Err(LayerError::SourceIsSymlink { path, source_path }),
        Err(errno) => return Err(LayerError::OpenSource { path, source_path, source: errno.into() }),
    };
    let metadata =
        file.metadata().map_err(|source| LayerError::ReadSource { path: path.clone(), source_path: source_path.clone(), source })?;
    if !metadata.file_type().is_file() {
        return Err(LayerError::SourceNotRegular { path, source_path, found: file_type_name(&metadata) });
    }
    if metadata.len() != size {
        return Err(LayerError::SourceSizeChanged { path, source_path, expected: size, found: metadata.len() });
    }
    Ok(file)
}

fn file_type_name(metadata: &std::fs::Metadata) -> &'static str {
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else {
        "file of another type"
    }
}

/// A header carrying the entry's owner, mode and mtime, and nothing that depends on the machine
/// (uname/gname stay empty: the numeric ids are what the image means). Size 0 unless set later.
fn header_for(entry: &UpperEntry, entry_type: EntryType, mode: u32) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(mode & MODE_BITS);
    header.set_uid(entry.uid.into());
    header.set_gid(entry.gid.into());
    // A tar's mtime is unsigned; a file dated before 1970 is written as 1970.
    header.set_mtime(u64::try_from(entry.mtime).unwrap_or(0));
    header.set_size(0);
    header
}

/// Why reading a file's content stopped, kept aside because the tar crate turns any read error
/// into its own: this tells a failing source from a failing output.
enum SourceFailure {
    Read(io::Error),
    SizeChanged,
}

/// Exactly `expected` bytes of a file, or a failure: the tar header already says how many bytes
/// follow, so a file that shrank or grew while it was read must fail the layer, not corrupt it.
struct SourceReader<'failure> {
    file: File,
    expected: u64,
    remaining: u64,
    failure: &'failure mut Option<SourceFailure>,
}

impl SourceReader<'_> {
    fn fail(&mut self, failure: SourceFailure) -> io::Error {
        *self.failure = Some(failure);
        io::Error::other(format!("the content source failed after {} of {} bytes", self.expected - self.remaining, self.expected))
    }
}

impl Read for SourceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            // One byte more than the walk saw means the file grew: its tail would be lost.
            let mut probe = [0u8; 1];
            return match self.file.read(&mut probe) {
                Ok(0) => Ok(0),
                Ok(_) => Err(self.fail(SourceFailure::SizeChanged)),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => Err(error),
                Err(error) => Err(self.fail(SourceFailure::Read(error))),
            };
        }
        let wanted = usize::try_from(self.remaining).map_or(buf.len(), |remaining| remaining.min(buf.len()));
        match self.file.read(&mut buf[..wanted]) {
            Ok(0) => Err(self.fail(SourceFailure::SizeChanged)),
            Ok(read) => {
                self.remaining -= read as u64;
                Ok(read)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Err(error),
            Err(error) => Err(self.fail(SourceFailure::Read(error))),
        }
    }
}

/// The digest and size of a stream of bytes.
struct StreamDigest {
    digest: String,
    size: u64,
}

/// Passes writes through to `inner`, hashing and counting the bytes `inner` accepted.
struct DigestingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> DigestingWriter<W> {
    fn new(inner: W) -> Self {
        DigestingWriter { inner, hasher: Sha256::new(), size: 0 }
    }

    fn finish(self) -> (W, StreamDigest) {
        let digest = format_sha256(self.hasher.finalize().as_slice());
        (self.inner, StreamDigest { digest, size: self.size })
    }
}

impl<W: Write> Write for DigestingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
