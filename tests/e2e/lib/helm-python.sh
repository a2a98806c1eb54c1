#!/usr/bin/env bash
# Prints a Python interpreter that can import helm_python (PyPI: helm-python-sdk, the Helm v4
# library behind tests/e2e/lib/chart.py), installing the package first when needed: into the
# current python3 if pip may write there, else into a venv in the build cache.
#
# Usage: PYTHON="$(tests/e2e/lib/helm-python.sh)"; "$PYTHON" tests/e2e/lib/chart.py ...
set -euo pipefail

readonly PACKAGE=helm-python-sdk
readonly VENV="${SC_CACHE_DIR:-/var/cache/stoppablecontainer}/helm-python-venv"

log() { printf '[helm-python] %s\n' "$*" >&2; }
can_import() { "$1" -c 'import helm_python' >/dev/null 2>&1; }

if can_import python3; then
  command -v python3
  exit 0
fi
if [[ -x "$VENV/bin/python" ]] && can_import "$VENV/bin/python"; then
  echo "$VENV/bin/python"
  exit 0
fi
# Debian's python3 is "externally managed" (PEP 668): pip may not install into it, so use a venv.
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  log "installing python3-venv"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv </dev/null >&2
fi
log "installing $PACKAGE into $VENV"
rm -rf "$VENV"
python3 -m venv "$VENV" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$PACKAGE" >&2
can_import "$VENV/bin/python" || { echo "helm-python.sh: $PACKAGE installed but 'import helm_python' fails" >&2; exit 1; }
echo "$VENV/bin/python"
