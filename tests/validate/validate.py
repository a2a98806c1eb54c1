#!/usr/bin/env python3
"""Validate Kubernetes objects strictly against the published schemas of every Kubernetes minor
release that PyPI's kubernetes-validate ships, from MIN_VERSION on (1.20, which these machines
can build, is covered by the live e2e cluster instead).

  validate.py [--min-version 1.25] PATH...

Each PATH is a YAML or JSON file (one or more documents) or a directory of them (searched
recursively). Strict: a field the schema does not define is an error, so a typo or a field that
a release dropped fails here instead of being pruned silently by the API server. A kind that a
release does not serve (no schema) is an error too. Objects of our own API group have no upstream
schema; they are skipped and counted (their CRDs are validated as CustomResourceDefinition objects).

Prints one line per failure, "FAIL <file>: <Kind> <namespace/name> on Kubernetes <version>:
<field path>: <error>", then a summary; exits 1 when anything failed, 2 on unusable input.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from dataclasses import dataclass
from typing import Iterable, Iterator

try:
    import jsonschema
    import kubernetes_validate.utils as kv
    import yaml
    from packaging.version import Version
except ImportError as error:
    print(
        f"validate.py: {error}; run it with the Python that tests/validate/python.sh prints "
        "(or: pip install kubernetes-validate)",
        file=sys.stderr,
    )
    sys.exit(2)

# Objects of these API groups are ours: no upstream schema describes them.
OWN_GROUPS = ("stoppablecontainer.xtlsoft.top",)
DEFAULT_MIN_VERSION = "1.25"
# libyaml's parser when PyYAML has it: the CRDs are 1 MB of YAML, which the pure-Python one reads in seconds.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Document:
    path: str
    index: int
    body: dict

    def describe(self) -> str:
        metadata = self.body.get("metadata") or {}
        name = metadata.get("name", f"document {self.index + 1}")
        namespace = metadata.get("namespace")
        return f"{self.body.get('kind', '?')} {namespace + '/' if namespace else ''}{name}"


@dataclass(frozen=True)
class Failure:
    document: Document
    version: str
    message: str

    def __str__(self) -> str:
        return f"FAIL {self.document.path}: {self.document.describe()} on Kubernetes {self.version}: {self.message}"


class InputError(Exception):
    """A file that is not a list of Kubernetes objects: say which and why."""


def versions_from(min_version: str) -> list[str]:
    """The minor releases kubernetes-validate ships, oldest first, from min_version on."""
    shipped = sorted({kv.major_minor(version) for version in kv.all_versions()}, key=Version)
    chosen = [version for version in shipped if Version(version) >= Version(min_version)]
    if not chosen:
        raise InputError(f"kubernetes-validate ships no release from {min_version} on (it has {', '.join(shipped)})")
    return chosen


def files_under(paths: Iterable[str]) -> Iterator[str]:
    for path in paths:
        if os.path.isdir(path):
            for root, _, names in sorted(os.walk(path)):
                for name in sorted(names):
                    if name.endswith((".yaml", ".yml", ".json")):
                        yield os.path.join(root, name)
        elif os.path.isfile(path):
            yield path
        else:
            raise InputError(f"{path}: no such file or directory")


def documents_of(path: str) -> list[Document]:
    with open(path, encoding="utf-8") as file:
        text = file.read()
    try:
        bodies = [json.loads(text)] if path.endswith(".json") else list(yaml.load_all(text, Loader=YAML_LOADER))
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise InputError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: {error}") from error
    documents = []
    for index, body in enumerate(bodies):
        if body is None:
            continue
        if not isinstance(body, dict) or "apiVersion" not in body or "kind" not in body:
            raise InputError(f"{path}: document {index + 1} is not a Kubernetes object (no apiVersion and kind)")
        documents.append(Document(path, index, body))
    return documents


def is_own(document: Document) -> bool:
    return document.body["apiVersion"].split("/")[0] in OWN_GROUPS


def schema_dir(version: str) -> str:
    return f"kubernetes-json-schema/v{version}.0-local-strict"


@functools.lru_cache(maxsize=None)
def definitions_of(version: str) -> kv.Resource:
    """The shared definitions of one release (2 MB of JSON: read once per release)."""
    return kv.Resource.from_contents(kv.schema_contents(f"{schema_dir(version)}/_definitions.json", version))


@functools.lru_cache(maxsize=None)
def validator_for(kind: str, api_version: str, version: str) -> jsonschema.protocols.Validator | None:
    """The strict validator of one kind in one release (None: the release has no such kind).

    The same schema files and validator as kubernetes-validate's validate(), which re-reads the
    definitions on every call; built once per kind and release, the run stays short."""
    # Its schema naming: rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1.
    group, _, group_version = api_version.rpartition("/")
    schema_api = f"{group.split('.')[0]}-{group_version}" if group else group_version
    try:
        schema = kv.schema_contents(f"{schema_dir(version)}/{kind.lower()}-{schema_api}.json", version)
    except FileNotFoundError:
        return None
    registry = definitions_of(version) @ (kv.Resource.from_contents(schema) @ kv.Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def check(document: Document, version: str) -> list[Failure]:
    """Every schema error of one object in one release (empty: it is valid there)."""
    validator = validator_for(document.body["kind"], document.body["apiVersion"], version)
    if validator is None:
        return [Failure(document, version, f"no schema for {document.body['kind']} {document.body['apiVersion']}: the release does not serve it")]
    failures = []
    for error in sorted(validator.iter_errors(document.body), key=lambda e: list(map(str, e.absolute_path))):
        field = ".".join(str(part) for part in error.absolute_path) or "(the object)"
        failures.append(Failure(document, version, f"{field}: {error.message}"))
    return failures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-version", default=DEFAULT_MIN_VERSION, help="oldest minor release to check (default %(default)s)")
    parser.add_argument("paths", nargs="+", metavar="PATH")
    args = parser.parse_args(argv)
    try:
        versions = versions_from(args.min_version)
        documents = [document for path in files_under(args.paths) for document in documents_of(path)]
    except (InputError, OSError) as error:
        print(f"validate.py: {error}", file=sys.stderr)
        return 2
    if not documents:
        print(f"validate.py: no Kubernetes objects in {' '.join(args.paths)}", file=sys.stderr)
        return 2

    upstream = [document for document in documents if not is_own(document)]
    skipped = len(documents) - len(upstream)
    failures = [failure for document in upstream for version in versions for failure in check(document, version)]
    for failure in failures:
        print(failure)
    files = len({document.path for document in documents})
    summary = (
        f"{len(upstream)} objects from {files} files against Kubernetes {versions[0]} to {versions[-1]} "
        f"({len(versions)} releases, strict); {skipped} objects of {', '.join(OWN_GROUPS)} skipped (no upstream schema)"
    )
    if failures:
        print(f"validate.py: {len(failures)} errors in {summary}", file=sys.stderr)
        return 1
    print(f"validate.py: valid: {summary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
