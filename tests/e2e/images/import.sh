#!/usr/bin/env bash
# Imports docker-archive tars (from pack-image.py, or `docker save`) into the e2e cluster's
# containerd, in the `k8s.io` namespace that kubelet's CRI uses. Pods then use the image by
# its tag with `imagePullPolicy: Never` or `IfNotPresent`.
#
# Usage: tests/e2e/images/import.sh IMAGE.tar...
# The containerd socket is $SC_E2E_CONTAINERD_SOCK, or the one of the cluster in the work dir
# (${SC_E2E_DIR:-/var/tmp/sc-e2e}).
set -euo pipefail
# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/common.sh"

if [[ $# -eq 0 ]]; then
  print_usage >&2
  exit 2
fi
sock="${SC_E2E_CONTAINERD_SOCK:-$E2E_WORK_DIR/run/containerd/containerd.sock}"
[[ -S "$sock" ]] ||
  die "no containerd socket at $sock; start the cluster with tests/e2e/cluster.sh up (or set SC_E2E_CONTAINERD_SOCK)"
for archive in "$@"; do
  [[ -f "$archive" ]] || die "$archive is not a file"
  # Unpacked for the overlayfs snapshotter CRI uses, so the first pod start needs no unpack.
  ctr -a "$sock" -n k8s.io images import --snapshotter overlayfs "$archive" >&2
done
