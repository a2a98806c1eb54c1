#!/usr/bin/env python3
"""Pack a root filesystem into a single-layer docker-archive tar that
`ctr images import` (and `docker load`) accept, so the e2e cluster needs no registry.

The rootfs is either a directory or an existing tar of one (used as the layer as is).

Example:
  pack-image.py --rootfs ./rootfs --tag sc-test/busybox:1 --output busybox.tar \
      --cmd '["/bin/sh"]' --env PATH=/bin --workdir /
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shlex
import shutil
import sys
import tarfile
import tempfile

# A fixed creation time keeps the config digest (and so the image ID) a function of the
# content only: packing the same rootfs twice gives the same image.
FIXED_CREATED = "1970-01-01T00:00:00Z"
COPY_CHUNK = 1 << 20


class PackError(Exception):
    """A user-facing error: what was wrong and what to do."""


def parse_command(value: str | None, flag: str) -> list[str] | None:
    """`--entrypoint`/`--cmd` take a JSON array (exact argv) or a shell-like string."""
    if value is None:
        return None
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise PackError(f"{flag} {value!r} is not a valid JSON array: {error}") from error
        if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
            raise PackError(f"{flag} must be a JSON array of strings, got {value!r}")
        return parsed
    return shlex.split(value)


def parse_env(entries: list[str]) -> list[str]:
    for entry in entries:
        if "=" not in entry or entry.startswith("="):
            raise PackError(f"--env {entry!r} must look like NAME=value")
    return entries


def parse_tag(tag: str) -> str:
    name, sep, version = tag.rpartition(":")
    if not sep or not name or not version or "/" in version:
        raise PackError(f"--tag {tag!r} must look like name:tag (for example sc-test/busybox:1)")
    return tag


def image_config(layer_diff_id: str, args: argparse.Namespace) -> dict:
    """The OCI/docker image config: only the fields a runtime reads, plus the settable ones."""
    container_config: dict = {}
    if args.entrypoint is not None:
        container_config["Entrypoint"] = args.entrypoint
    if args.cmd is not None:
        container_config["Cmd"] = args.cmd
    if args.env:
        container_config["Env"] = args.env
    if args.workdir:
        container_config["WorkingDir"] = args.workdir
    if args.user:
        container_config["User"] = args.user
    if args.label:
        container_config["Labels"] = dict(label.split("=", 1) for label in args.label)
    return {
        "architecture": args.architecture,
        "os": "linux",
        "created": FIXED_CREATED,
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [layer_diff_id]},
        "history": [{"created": FIXED_CREATED, "created_by": "tests/e2e/images/pack-image.py"}],
    }


def _sorted_walk_add(archive: tarfile.TarFile, root: str) -> None:
    """Add every entry below `root` with paths relative to it, in a stable order.

    tarfile records hard links (same inode) as links and keeps numeric owners, modes,
    symlinks and device nodes, which is what a container layer needs.
    """
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        relative_dir = os.path.relpath(directory, root)
        for name in sorted(subdirs) + sorted(files):
            path = os.path.join(directory, name)
            arcname = name if relative_dir == "." else os.path.join(relative_dir, name)
            info = archive.gettarinfo(path, arcname=arcname)
            if info is None:  # sockets cannot be archived; a rootfs does not need them
                continue
            # Names of the packing machine's users must not leak into the image.
            info.uname = ""
            info.gname = ""
            if info.isreg():
                with open(path, "rb") as content:
                    archive.addfile(info, content)
            else:
                archive.addfile(info)
        # os.walk would descend into symlinked directories only with followlinks=True;
        # the default (False) keeps symlinks as links, which is what we want.


class HashingWriter(io.RawIOBase):
    """A write-only file that hashes what passes through it."""

    def __init__(self, target):
        self.target = target
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.digest.update(data)
        self.target.write(data)
        return len(data)


def write_layer(rootfs: str, layer_path: str) -> str:
    """Writes layer.tar from a directory or copies an existing rootfs tar; returns its sha256."""
    with open(layer_path, "wb") as raw:
        writer = HashingWriter(raw)
        if os.path.isdir(rootfs):
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as archive:
                _sorted_walk_add(archive, rootfs)
        elif os.path.isfile(rootfs):
            if not tarfile.is_tarfile(rootfs):
                raise PackError(f"--rootfs {rootfs!r} is neither a directory nor a tar file")
            with open(rootfs, "rb") as source:
                shutil.copyfileobj(source, writer, COPY_CHUNK)
        else:
            raise PackError(f"--rootfs {rootfs!r} does not exist; pass a rootfs directory or tar")
    return writer.digest.hexdigest()


def pack(args: argparse.Namespace) -> None:
    output_dir = os.path.dirname(os.path.abspath(args.output))
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".pack-image.") as staging:
        layer_tmp = os.path.join(staging, "layer.tar")
        layer_sha = write_layer(args.rootfs, layer_tmp)
        layer_dir = os.path.join(staging, layer_sha)
        os.mkdir(layer_dir)
        os.rename(layer_tmp, os.path.join(layer_dir, "layer.tar"))

        config_bytes = json.dumps(
            image_config(f"sha256:{layer_sha}", args), sort_keys=True, separators=(",", ":")
        ).encode()
        config_sha = hashlib.sha256(config_bytes).hexdigest()
        config_name = f"{config_sha}.json"
        with open(os.path.join(staging, config_name), "wb") as config_file:
            config_file.write(config_bytes)

        manifest = [{"Config": config_name, "RepoTags": [args.tag], "Layers": [f"{layer_sha}/layer.tar"]}]
        with open(os.path.join(staging, "manifest.json"), "w", encoding="utf-8") as manifest_file:
            json.dump(manifest, manifest_file)
        name, _, version = args.tag.rpartition(":")
        with open(os.path.join(staging, "repositories"), "w", encoding="utf-8") as repositories:
            json.dump({name: {version: config_sha}}, repositories)

        # Write the archive next to the output and rename it, so a reader never sees half a file.
        partial = os.path.join(staging, "image.tar")
        with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as image:
            for member in ("manifest.json", "repositories", config_name, layer_sha):
                image.add(os.path.join(staging, member), arcname=member)
        os.replace(partial, args.output)
    print(f"{args.output}: {args.tag} image sha256:{config_sha}", file=sys.stderr)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rootfs", required=True, help="root filesystem: a directory or a tar of one")
    parser.add_argument("--tag", required=True, help="image reference name:tag, e.g. sc-test/busybox:1")
    parser.add_argument("--output", required=True, help="docker-archive tar to write")
    parser.add_argument("--entrypoint", help='JSON array (["/pause"]) or shell-like string')
    parser.add_argument("--cmd", help='JSON array (["/bin/sh"]) or shell-like string')
    parser.add_argument("--env", action="append", default=[], help="NAME=value (repeatable)")
    parser.add_argument("--workdir", help="working directory")
    parser.add_argument("--user", help="user[:group] the image runs as")
    parser.add_argument("--label", action="append", default=[], help="key=value image label (repeatable)")
    parser.add_argument("--architecture", default="amd64", help="image architecture (default amd64)")
    args = parser.parse_args(argv)
    args.tag = parse_tag(args.tag)
    args.entrypoint = parse_command(args.entrypoint, "--entrypoint")
    args.cmd = parse_command(args.cmd, "--cmd")
    args.env = parse_env(args.env)
    for label in args.label:
        if "=" not in label:
            raise PackError(f"--label {label!r} must look like key=value")
    return args


def main(argv: list[str]) -> int:
    try:
        pack(parse_args(argv))
    except PackError as error:
        print(f"pack-image.py: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
