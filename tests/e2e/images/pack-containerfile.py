#!/usr/bin/env python3
"""Pack an image from a `FROM scratch` Containerfile without a container engine, as a
docker-archive tar (the format pack-image.py writes and `cluster.sh import-image` loads).

The project's images (images/*.Containerfile) are the recipe for real registries; this reads the
same files, so the images the e2e tests run have exactly the layout users get from
`docker build`. Only what those files use is supported, and anything else is an error rather
than silently ignored: FROM scratch, COPY <src> <dst> (files from the context), LABEL, ENV,
USER, WORKDIR, ENTRYPOINT and CMD (JSON form), comments and `\\` continuations.

Example:
  pack-containerfile.py --file images/exec-wrapper.Containerfile --context /tmp/ctx \
      --tag stoppablecontainer/exec-wrapper:0.2.0 --output exec-wrapper.tar
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

PACK_IMAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pack-image.py")


class ContainerfileError(Exception):
    """What is wrong with the Containerfile or the context, and where."""


@dataclass
class Recipe:
    copies: list[tuple[str, str]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    user: str | None = None
    workdir: str | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Joins `\\` continuations and drops comments and blank lines; keeps the first line number."""
    lines: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append((start, pending + stripped))
        pending = ""
    if pending:
        raise ContainerfileError(f"line {start}: the file ends inside a `\\` continuation")
    return lines


def json_command(value: str, where: str) -> list[str]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ContainerfileError(f"{where}: use the JSON form, e.g. [\"/bin/app\"] ({error})") from error
    if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
        raise ContainerfileError(f"{where}: expected a JSON array of strings")
    return parsed


def key_values(value: str, where: str) -> list[str]:
    pairs = shlex.split(value)
    for pair in pairs:
        if "=" not in pair or pair.startswith("="):
            raise ContainerfileError(f"{where}: {pair!r} must look like key=value")
    return pairs


def parse(text: str) -> Recipe:
    recipe = Recipe()
    saw_from = False
    for number, line in logical_lines(text):
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        rest = rest.strip()
        where = f"line {number} ({instruction})"
        if not saw_from and instruction != "FROM":
            raise ContainerfileError(f"{where}: the first instruction must be FROM scratch")
        if instruction == "FROM":
            if saw_from or rest != "scratch":
                raise ContainerfileError(f"{where}: only a single `FROM scratch` stage is supported")
            saw_from = True
        elif instruction == "COPY":
            parts = shlex.split(rest)
            if len(parts) != 2 or any(part.startswith("--") for part in parts):
                raise ContainerfileError(f"{where}: expected `COPY <file> <absolute path>` without flags")
            source, destination = parts
            if not destination.startswith("/"):
                raise ContainerfileError(f"{where}: the destination {destination!r} must be absolute")
            if destination.endswith("/"):
                destination += os.path.basename(source)
            recipe.copies.append((source, destination))
        elif instruction == "LABEL":
            recipe.labels.extend(key_values(rest, where))
        elif instruction == "ENV":
            recipe.env.extend(key_values(rest, where))
        elif instruction == "USER":
            recipe.user = rest
        elif instruction == "WORKDIR":
            recipe.workdir = rest
        elif instruction == "ENTRYPOINT":
            recipe.entrypoint = json_command(rest, where)
        elif instruction == "CMD":
            recipe.cmd = json_command(rest, where)
        else:
            raise ContainerfileError(f"{where}: not supported by this packer; extend it or the recipe")
    if not saw_from:
        raise ContainerfileError("no FROM instruction")
    return recipe


def build_rootfs(recipe: Recipe, context: str, rootfs: str) -> None:
    context = os.path.abspath(context)
    for source, destination in recipe.copies:
        source_path = os.path.normpath(os.path.join(context, source))
        if os.path.commonpath([context, source_path]) != context:
            raise ContainerfileError(f"COPY {source}: outside the build context {context}")
        if not os.path.isfile(source_path):
            raise ContainerfileError(f"COPY {source}: no such file in the build context {context}")
        target = os.path.join(rootfs, destination.lstrip("/"))
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        shutil.copy2(source_path, target)
        # As in `docker build`: root-owned, the context file's mode.
        os.chown(target, 0, 0)


def pack(args: argparse.Namespace) -> None:
    with open(args.file, encoding="utf-8") as containerfile:
        recipe = parse(containerfile.read())
    output_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".pack-containerfile.") as rootfs:
        os.chmod(rootfs, 0o755)
        build_rootfs(recipe, args.context, rootfs)
        command = [sys.executable, PACK_IMAGE, "--rootfs", rootfs, "--tag", args.tag, "--output", args.output]
        for label in recipe.labels:
            command += ["--label", label]
        for entry in recipe.env:
            command += ["--env", entry]
        if recipe.user:
            command += ["--user", recipe.user]
        if recipe.workdir:
            command += ["--workdir", recipe.workdir]
        if recipe.entrypoint is not None:
            command += ["--entrypoint", json.dumps(recipe.entrypoint)]
        if recipe.cmd is not None:
            command += ["--cmd", json.dumps(recipe.cmd)]
        subprocess.run(command, check=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", required=True, help="the Containerfile")
    parser.add_argument("--context", required=True, help="build context directory (COPY sources)")
    parser.add_argument("--tag", required=True, help="image reference name:tag")
    parser.add_argument("--output", required=True, help="docker-archive tar to write")
    args = parser.parse_args(argv)
    try:
        pack(args)
    except ContainerfileError as error:
        print(f"pack-containerfile.py: {args.file}: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        return error.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
