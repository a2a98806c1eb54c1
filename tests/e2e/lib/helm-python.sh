#!/usr/bin/env bash
# Prints a Python interpreter that can import helm_python (PyPI: helm-python-sdk, the Helm v4
# library behind tests/e2e/lib/chart.py), installing the package first when needed: into a venv
# in the build cache when the current python3 lacks it (tests/lib/python-venv.sh).
#
# Usage: PYTHON="$(tests/e2e/lib/helm-python.sh)"; "$PYTHON" tests/e2e/lib/chart.py ...
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../../lib/python-venv.sh" helm-python-venv helm-python-sdk helm_python
