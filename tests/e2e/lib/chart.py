#!/usr/bin/env python3
"""Lint and render charts/stoppablecontainer without a helm binary, with the Helm v4 library that
PyPI's helm-python-sdk ships (tests/e2e/lib/helm-python.sh finds or installs it).

  chart.py lint CHART_DIR
      helm lint --strict (default values and the e2e values), plus the checks Helm cannot do:
      the chart's CSI driver name is the one in api/src/consts.rs.
  chart.py render CHART_DIR --namespace NS [--name RELEASE] [-f VALUES.yaml]... [--set KEY=VALUE]...
      [--output FILE]
      the manifests of templates/ as one YAML stream in Helm's install order (CRDs are not in
      it: apply crds/ first, server-side). The chart users install is the chart the tests install.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

try:
    import helm_python
except ImportError:
    print(
        "chart.py: the Python package helm-python-sdk is missing; run tests/e2e/lib/helm-python.sh "
        "(or: pip install helm-python-sdk)",
        file=sys.stderr,
    )
    sys.exit(3)

REPO_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
E2E_VALUES = os.path.join(REPO_DIR, "tests", "e2e", "values-e2e.yaml")
CONSTS_RS = os.path.join(REPO_DIR, "api", "src", "consts.rs")
LINT_NAMESPACE = "stoppablecontainer-system"

# Helm's install order (pkg/release/util/kind_sorter.go); kinds not listed go last.
INSTALL_ORDER = [
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList",
    "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController",
    "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob",
    "IngressClass", "Ingress", "APIService",
]
SEVERITY = {0: "unknown", 1: "info", 2: "warning", 3: "error"}


class ChartError(Exception):
    """A user-facing failure: what is wrong and what to do."""


def load_values_file(path: str) -> dict:
    with open(path, encoding="utf-8") as values_file:
        values = helm_python.values_from_yaml(values_file.read())
    if not isinstance(values, dict):
        raise ChartError(f"{path}: values must be a YAML mapping")
    return values


def merge(base: dict, override: dict) -> dict:
    """Helm's values merge: maps merge recursively, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def set_value(values: dict, assignment: str) -> dict:
    """--set a.b.c=value (strings; true/false and integers as Helm's --set parses them)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ChartError(f"--set {assignment!r} must look like key.path=value")
    value: object = raw
    if raw in ("true", "false"):
        value = raw == "true"
    elif re.fullmatch(r"-?[0-9]+", raw):
        value = int(raw)
    override: dict = {}
    cursor = override
    parts = key.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return merge(values, override)


def documents(manifest: str) -> list[str]:
    docs = []
    for doc in re.split(r"^---[ \t]*$", manifest, flags=re.MULTILINE):
        if re.search(r"^kind:", doc, flags=re.MULTILINE):
            docs.append(doc.strip("\n"))
    return docs


def kind_rank(doc: str) -> int:
    match = re.search(r"^kind:\s*(\S+)", doc, flags=re.MULTILINE)
    kind = match.group(1) if match else ""
    return INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)


def render(chart_dir: str, values: dict, name: str, namespace: str) -> str:
    try:
        rendered = helm_python.Chart.load(chart_dir).render(values, name=name, namespace=namespace, is_install=True)
    except helm_python.HelmError as error:
        raise ChartError(f"rendering {chart_dir} failed: {error}") from error
    docs = []
    for template in sorted(rendered):
        if template.endswith("NOTES.txt"):
            continue
        for doc in documents(rendered[template]):
            docs.append((kind_rank(doc), template, f"# Source: {template}\n{doc}"))
    # Stable: by install order, then by template path as Helm does.
    docs.sort(key=lambda item: (item[0], item[1]))
    return "---\n" + "\n---\n".join(doc for _, _, doc in docs) + "\n"


def lint(chart_dir: str) -> list[str]:
    problems = []
    for label, values in (("default values", None), ("e2e values", load_values_file(E2E_VALUES))):
        report = helm_python.lint(chart_dir, values, strict=True, namespace=LINT_NAMESPACE)
        for message in report.get("messages", []):
            severity = message.get("severity", 0)
            line = f"{label}: [{SEVERITY.get(severity, severity)}] {message.get('path')}: {message.get('error')}"
            print(line, file=sys.stderr)
            if severity >= 2:
                problems.append(line)
        problems.extend(f"{label}: {error}" for error in report.get("errors", []))

    with open(CONSTS_RS, encoding="utf-8") as consts:
        match = re.search(r'pub const CSI_DRIVER_NAME: &str = "([^"]+)";', consts.read())
    if not match:
        problems.append(f"CSI_DRIVER_NAME not found in {CONSTS_RS}")
    else:
        manifest = render(chart_dir, {}, "sc", LINT_NAMESPACE)
        if f"name: {match.group(1)}\n" not in manifest:
            problems.append(f"the chart's CSIDriver is not named {match.group(1)} (CSI_DRIVER_NAME in {CONSTS_RS}); "
                            "fix sc.driverName in templates/_helpers.tpl")
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    lint_parser = commands.add_parser("lint")
    lint_parser.add_argument("chart")
    render_parser = commands.add_parser("render")
    render_parser.add_argument("chart")
    render_parser.add_argument("--namespace", required=True)
    render_parser.add_argument("--name", default="stoppablecontainer")
    render_parser.add_argument("-f", "--values", action="append", default=[])
    render_parser.add_argument("--set", action="append", default=[])
    render_parser.add_argument("--output", help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    try:
        if args.command == "lint":
            problems = lint(args.chart)
            for problem in problems:
                print(f"chart.py lint: {problem}", file=sys.stderr)
            if problems:
                return 1
            print(f"chart.py lint: {args.chart} is clean", file=sys.stderr)
            return 0
        values: dict = {}
        for path in args.values:
            values = merge(values, load_values_file(path))
        for assignment in args.set:
            values = set_value(values, assignment)
        manifest = render(args.chart, values, args.name, args.namespace)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as output:
                output.write(manifest)
        else:
            sys.stdout.write(manifest)
    except (ChartError, OSError) as error:
        print(f"chart.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
