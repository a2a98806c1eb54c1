#!/usr/bin/env bash
# Prints a Python interpreter that can import MODULE from PyPI's PACKAGE, installing the package
# first when needed: the current python3 if it already has it, else a venv in the build cache
# (${SC_CACHE_DIR:-/var/cache/stoppablecontainer}/VENV_NAME), made once and reused.
#
# Usage: PYTHON="$(tests/lib/python-venv.sh VENV_NAME PACKAGE MODULE)"
set -euo pipefail
# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -eq 3 ]] || { print_usage >&2; exit 2; }
readonly VENV="$CACHE_ROOT/$1" PACKAGE="$2" MODULE="$3"
: "${SC_LOG_TAG:=$1}"

can_import() { "$1" -c "import $MODULE" >/dev/null 2>&1; }

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
can_import "$VENV/bin/python" || die "$PACKAGE installed into $VENV, but 'import $MODULE' fails there; remove $VENV and rerun"
echo "$VENV/bin/python"
