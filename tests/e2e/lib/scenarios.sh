# shellcheck shell=bash disable=SC2034  # SCENARIOS and SCENARIO_NAMESPACES are read by run.sh
# The end-to-end scenarios (issue 5) and their helpers. Sourced by tests/e2e/run.sh after
# lib/product.sh (and so tests/lib/common.sh); each scenario runs in a subshell with `set -e`, so any
# failing command fails it.
# Every scenario asserts on data (files, users, binaries, capabilities, mounts), not only on phases.

SCENARIO_MANIFESTS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../manifests" && pwd)"
readonly SCENARIO_MANIFESTS
# Namespaces the scenarios create (diagnostics describe them on failure).
readonly SCENARIO_NAMESPACES=(e2e-persist e2e-legacy e2e-other e2e-unpriv e2e-durable e2e-image e2e-tenant e2e-imagecfg e2e-seeds
  e2e-storage-harness e2e-storage e2e-storage-node e2e-layer e2e-layer-other)

# --- assertions ----------------------------------------------------------------------------

step() { printf '  - %s\n' "$*" >&2; }
fail() {
  printf '  FAIL: %s\n' "$*" >&2
  exit 1
}
expect_eq() {
  local what="$1" expected="$2" actual="$3"
  [[ "$actual" == "$expected" ]] || fail "$what: expected '$expected', got '$actual'"
}
expect_contains() {
  local what="$1" haystack="$2" needle="$3"
  [[ "$haystack" == *"$needle"* ]] || fail "$what: expected to contain '$needle', got: $haystack"
}
expect_not_contains() {
  local what="$1" haystack="$2" needle="$3"
  [[ "$haystack" != *"$needle"* ]] || fail "$what: must not contain '$needle', got: $haystack"
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls every second; a timeout fails the scenario.
wait_for() { wait_until --fail fail "$@"; }

# --- cluster access --------------------------------------------------------------------------

# kubectl against the e2e cluster; `kc sc` runs the kubectl-sc plugin built by this run.
kc() { e2e_kubectl "$@"; }

sc_field() { kc -n "$1" get stoppablecontainer "$2" -o "jsonpath=$3" 2>/dev/null; }
sc_phase() { sc_field "$1" "$2" '{.status.phase}'; }
sc_uid() { sc_field "$1" "$2" '{.metadata.uid}'; }
phase_is() { [[ "$(sc_phase "$1" "$2")" == "$3" ]]; }
pod_ready() {
  [[ "$(kc -n "$1" get pod "$2" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}
running_and_ready() { phase_is "$1" "$2" Running && pod_ready "$1" "$2"; }

wait_running() {
  local namespace="$1" name="$2" timeout="${3:-180}"
  wait_for "StoppableContainer $namespace/$name to be Running (phase now: $(sc_phase "$namespace" "$name"))" \
    "$timeout" running_and_ready "$namespace" "$name"
}

# Runs a command inside the StoppableContainer's persistent rootfs, the way users do.
in_sc() {
  local namespace="$1" name="$2"
  shift 2
  kc sc -n "$namespace" exec "$name" -- "$@"
}

# sc_data_dir (tests/lib/common.sh) is the SC's data on the node: its own filesystem's image,
# mounted at fs/ while a consumer runs.
# kept_file NAMESPACE NAME UID PATH: a file of the SC's upper layer as the node keeps it.
kept_file() { with_kept_upper "$1" "$2" "$3" cat_under "$4"; }
cat_under() { cat "$2/$1"; }

container_pids() {
  # container_pids CONTAINER_ID: host PIDs whose cgroup names the container. A process that
  # exits while grep reads /proc makes grep exit 2, which is not a failure here.
  { grep -ls -- "$1" /proc/[0-9]*/cgroup || true; } | cut -d/ -f3
}

node_plugin_ready() {
  kc -n "$PRODUCT_NAMESPACE" rollout status "daemonset/$PRODUCT_RELEASE-node" --timeout=5s &&
    csi_driver_registered
}
operator_ready() { kc -n "$PRODUCT_NAMESPACE" rollout status "deployment/$PRODUCT_RELEASE-operator" --timeout=5s; }

fresh_namespace() {
  kc delete namespace "$1" --ignore-not-found --wait=true >/dev/null
  kc create namespace "$1" >/dev/null
}

random_token() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# --- 1. persistence with kubectl sc ----------------------------------------------------------

scenario_persistence() {
  local ns=e2e-persist token tool_sha
  token="$(random_token)"
  fresh_namespace "$ns"
  step "kubectl sc create dev --image sc-test/debian:bookworm -- sleep infinity"
  kc sc -n "$ns" create dev --image sc-test/debian:bookworm -e E2E_MARK=persist -- sleep infinity >/dev/null
  wait_running "$ns" dev 240

  step "write a file, add a user, install a static binary (kubectl cp of a static busybox into /usr/local/bin)"
  in_sc "$ns" dev sh -c "echo $token > /root/note.txt"
  in_sc "$ns" dev useradd --create-home --shell /bin/bash alice
  in_sc "$ns" dev sh -c 'echo hello-from-alice > /home/alice/hello && chown alice:alice /home/alice/hello'
  kc cp /bin/busybox "$ns/dev:/usr/local/bin/busybox"
  in_sc "$ns" dev chmod 0755 /usr/local/bin/busybox
  expect_eq "the installed binary runs" installed-ok "$(in_sc "$ns" dev busybox echo installed-ok)"
  expect_eq "the workload's env" persist "$(in_sc "$ns" dev printenv E2E_MARK)"

  local uid
  uid="$(sc_uid "$ns" dev)"
  step "stop (kubectl sc stop --wait): the consumer pod goes, the data stays on the node"
  local provider_uid
  provider_uid="$(kc -n "$ns" get pod dev-provider -o 'jsonpath={.metadata.uid}')"
  kc sc -n "$ns" stop dev --wait --timeout 2m >/dev/null
  expect_eq "phase after stop" Stopped "$(sc_phase "$ns" dev)"
  wait_for "the consumer pod to be gone" 60 bash -c "! kubectl -n $ns get pod dev >/dev/null 2>&1"
  # The provider (a pause process holding the image as the lower layer) stays, so that the next
  # start is only the consumer pod and a mount.
  expect_eq "the provider pod is kept while stopped" "$provider_uid" \
    "$(kc -n "$ns" get pod dev-provider -o 'jsonpath={.metadata.uid}')"
  mountpoint -q "$(sc_data_dir "$ns" dev "$uid")/fs" && fail "the stopped SC's filesystem is still mounted (and holds a loop device)"
  expect_eq "the note in the upper layer on the node" "$token" "$(kept_file "$ns" dev "$uid" root/note.txt)"

  step "start (kubectl sc start --wait); check everything on a fresh exec"
  kc sc -n "$ns" start dev --wait --timeout 3m >/dev/null
  wait_running "$ns" dev 180
  expect_eq "the start reused the provider" "$provider_uid" \
    "$(kc -n "$ns" get pod dev-provider -o 'jsonpath={.metadata.uid}')"
  expect_eq "the note after restart" "$token" "$(in_sc "$ns" dev cat /root/note.txt)"
  expect_contains "the user after restart" "$(in_sc "$ns" dev getent passwd alice)" "alice:x:"
  expect_eq "the user's file owner" alice "$(in_sc "$ns" dev stat -c %U /home/alice/hello)"
  tool_sha="$(sha256sum /bin/busybox | cut -d' ' -f1)"
  expect_eq "the installed binary's checksum" "$tool_sha" \
    "$(in_sc "$ns" dev sha256sum /usr/local/bin/busybox | cut -d' ' -f1)"
  expect_eq "the installed binary runs after restart" still-here "$(in_sc "$ns" dev busybox echo still-here)"
  step "plain kubectl exec finds the installed binary (sc-exec's symlink farm)"
  wait_for "kubectl exec dev -- busybox" 30 kc -n "$ns" exec dev -- busybox true
  expect_eq "plain kubectl exec" farm-ok "$(kc -n "$ns" exec dev -- busybox echo farm-ok)"
}

# --- 7. manifests written for the old Go operator ---------------------------------------------

scenario_legacy_manifests() {
  local ns=e2e-legacy
  fresh_namespace "$ns"
  step "the dev-environment example (PodSpec form) needs its PVC, service account and node label"
  kc label node "$(e2e_node_name)" node-type=development --overwrite >/dev/null
  # The PV's host path lies in the work dir, wherever SC_E2E_DIR puts it.
  sed "s|/var/tmp/sc-e2e/|$E2E_WORK_DIR/|" "$SCENARIO_MANIFESTS/legacy-dev-env-deps.yaml" | kc apply -f - >/dev/null
  kc apply -f "$SCENARIO_MANIFESTS/legacy-dev-env.yaml" >/dev/null
  kc apply -f "$SCENARIO_MANIFESTS/legacy-shorthand.yaml" >/dev/null
  wait_running "$ns" development-env 240
  wait_running "$ns" my-app 240

  step "development-env: env, labels, the PVC inside the rootfs at /workspace"
  expect_eq "ENVIRONMENT" development "$(in_sc "$ns" development-env printenv ENVIRONMENT)"
  expect_eq "template label on the pod" dev-env "$(kc -n "$ns" get pod development-env -o 'jsonpath={.metadata.labels.app}')"
  in_sc "$ns" development-env sh -c 'echo from-the-rootfs > /workspace/proof'
  expect_eq "the workspace file on the PV's host path" from-the-rootfs "$(cat "$E2E_WORK_DIR/run/dev-workspace/proof")"
  expect_contains "the workload's own output" "$(kc -n "$ns" logs development-env)" "Development environment starting..."

  step "my-app (template.container shorthand): runs its command in the persistent rootfs"
  expect_contains "my-app's output" "$(kc -n "$ns" logs my-app)" "my-app is up"
  in_sc "$ns" my-app sh -c 'echo kept > /root/kept'
  kc sc -n "$ns" restart my-app --wait --timeout 3m >/dev/null
  wait_running "$ns" my-app 180
  expect_eq "my-app's file after restart" kept "$(in_sc "$ns" my-app cat /root/kept)"

  kc sc -n "$ns" delete development-env --timeout 2m >/dev/null
  kc sc -n "$ns" delete my-app --timeout 2m >/dev/null
  kc delete -f "$SCENARIO_MANIFESTS/legacy-dev-env-deps.yaml" --wait=false >/dev/null
  kc label node "$(e2e_node_name)" node-type- >/dev/null
}

# --- 6. another namespace gets nothing; deletion leaves nothing --------------------------------

foreign_pod() {
  local namespace="$1" pod="$2" sc_name="$3"
  sed -e "s/NAMESPACE/$namespace/; s/POD_NAME/$pod/; s/SC_NAME/$sc_name/" \
    "$SCENARIO_MANIFESTS/foreign-pod.yaml" | kc apply -f - >/dev/null
}

failed_mount_event() {
  kc -n "$1" get events --field-selector "involvedObject.name=$2,reason=FailedMount" \
    -o 'jsonpath={.items[*].message}' 2>/dev/null
}
has_permission_denied() { [[ "$(failed_mount_event "$1" "$2")" == *PermissionDenied* ]]; }

scenario_isolation_and_delete() {
  local ns=e2e-persist other=e2e-other uid
  phase_is "$ns" dev Running || fail "needs the Running StoppableContainer $ns/dev of the persistence scenario"
  uid="$(sc_uid "$ns" dev)"
  fresh_namespace "$other"
  step "a pod in another namespace names dev's volume; an impostor pod in dev's namespace too"
  foreign_pod "$other" thief dev
  foreign_pod "$ns" dev-impostor dev
  wait_for "FailedMount PermissionDenied for $other/thief" 90 has_permission_denied "$other" thief
  wait_for "FailedMount PermissionDenied for $ns/dev-impostor" 90 has_permission_denied "$ns" dev-impostor
  expect_contains "the refusal names the reason" "$(failed_mount_event "$other" thief)" "may not mount"
  local pod thief_uid
  for pod in "$other/thief" "$ns/dev-impostor"; do
    expect_eq "$pod phase" Pending "$(kc -n "${pod%/*}" get pod "${pod#*/}" -o 'jsonpath={.status.phase}')"
    thief_uid="$(kc -n "${pod%/*}" get pod "${pod#*/}" -o 'jsonpath={.metadata.uid}')"
    expect_eq "CSI mounts in $pod's volume dir" "" "$(grep -F "/pods/$thief_uid/volumes/kubernetes.io~csi" /proc/self/mountinfo || true)"
  done
  kc delete namespace "$other" --wait=false >/dev/null
  kc -n "$ns" delete pod dev-impostor --wait=false >/dev/null

  step "kubectl sc delete dev: no mount and no directory left on the node"
  local data_dir
  data_dir="$(sc_data_dir "$ns" dev "$uid")"
  [[ -d "$data_dir" ]] || fail "expected dev's data at $data_dir before the delete"
  kc sc -n "$ns" delete dev --timeout 2m >/dev/null
  wait_for "StoppableContainer $ns/dev to be gone" 60 bash -c "! kubectl -n $ns get stoppablecontainer dev >/dev/null 2>&1"
  expect_eq "pods left" "" "$(kc -n "$ns" get pods -l stoppablecontainer.xtlsoft.top/instance=dev -o name)"
  expect_eq "mounts mentioning dev's data" "" "$(grep -F "$uid" /proc/self/mountinfo || true)"
  [[ ! -e "$data_dir" ]] || fail "$data_dir still exists after the delete"
  [[ ! -e "$NODE_DATA_ROOT/containers/$ns/dev" ]] || fail "$NODE_DATA_ROOT/containers/$ns/dev still exists"
}

# --- 2. unprivileged workload -------------------------------------------------------------------

scenario_unprivileged() {
  local ns=e2e-unpriv
  fresh_namespace "$ns"
  kc apply -f "$SCENARIO_MANIFESTS/unprivileged.yaml" >/dev/null
  step "the workload's own readiness probe holds the phase until /tmp/ready-flag exists"
  wait_for "the workload to start" 240 bash -c \
    "kubectl -n $ns logs app 2>/dev/null | grep -q 'workload started as uid'"
  sleep 5
  pod_ready "$ns" app && fail "the pod is Ready although its readiness probe cannot pass yet"
  [[ "$(sc_phase "$ns" app)" != Running ]] || fail "phase Running although the workload is not ready"
  in_sc "$ns" app touch /tmp/ready-flag
  wait_running "$ns" app 60

  step "kubectl logs: the workload's stdout, as uid 1000"
  expect_contains "kubectl logs app" "$(kc -n "$ns" logs app)" "workload started as uid 1000"

  step "identity and capabilities inside: uid 1000, no capabilities, no_new_privs"
  expect_eq "id -u" 1000 "$(in_sc "$ns" app id -u)"
  local status
  status="$(in_sc "$ns" app cat /proc/self/status)"
  expect_contains "CapEff" "$status" "CapEff:	0000000000000000"
  expect_contains "NoNewPrivs" "$status" "NoNewPrivs:	1"
  step "the consumer container itself: not privileged, no CAP_SYS_ADMIN"
  local security
  security="$(kc -n "$ns" get pod app -o 'jsonpath={.spec.containers[0].securityContext}')"
  expect_not_contains "consumer securityContext" "$security" '"privileged":true'
  expect_not_contains "consumer securityContext" "$security" SYS_ADMIN
  expect_contains "consumer securityContext" "$security" SYS_CHROOT

  step "/proc shows only the pod's processes"
  local comms pid_count
  comms="$(in_sc "$ns" app sh -c 'cat /proc/[0-9]*/comm')"
  expect_not_contains "processes visible inside" "$comms" kubelet
  expect_not_contains "processes visible inside" "$comms" containerd
  pid_count="$(in_sc "$ns" app sh -c 'ls -d /proc/[0-9]* | wc -l')"
  ((pid_count < 10)) || fail "$pid_count processes visible inside the pod: $comms"

  step "kubectl exec -it gets a terminal"
  local tty_output
  tty_output="$(script -qec "kubectl -n $ns exec -it app -- sh -c 'tty; echo tty-ok'" /dev/null 2>&1 </dev/null || true)"
  expect_contains "kubectl exec -it" "$tty_output" "/dev/pts/"
  expect_contains "kubectl exec -it" "$tty_output" "tty-ok"

  step "kubectl cp in and out of the persistent rootfs"
  local local_file copied
  local_file="$(mktemp)"
  copied="$(mktemp -u)"
  random_token >"$local_file"
  kc cp "$local_file" "$ns/app:/tmp/copied-in"
  expect_eq "the copied file inside" "$(cat "$local_file")" "$(in_sc "$ns" app cat /tmp/copied-in)"
  kc cp "$ns/app:/tmp/copied-in" "$copied"
  expect_eq "the file copied back out" "$(cat "$local_file")" "$(cat "$copied")"
  rm -f "$local_file" "$copied"
  kc sc -n "$ns" delete app --timeout 2m >/dev/null
}

# --- 3. crashes and restarts of every component --------------------------------------------------

restart_count() {
  kc -n "$1" get pod "$2" -o 'jsonpath={.status.containerStatuses[0].restartCount}' 2>/dev/null
}
restarted_since() { [[ "$(restart_count "$1" "$2")" -gt "$3" ]]; }

expect_token() {
  local ns="$1" name="$2" token="$3" when="$4"
  expect_eq "the file $when" "$token" "$(in_sc "$ns" "$name" cat /root/durable.txt)"
}

scenario_crashes_and_restarts() {
  local ns=e2e-durable token before
  token="$(random_token)"
  fresh_namespace "$ns"
  kc sc -n "$ns" create box --image sc-test/debian:bookworm -- sleep infinity >/dev/null
  wait_running "$ns" box 240
  in_sc "$ns" box sh -c "echo $token > /root/durable.txt"

  step "crash the workload process (kill -9 inside): the container restarts, the data stays"
  before="$(restart_count "$ns" box)"
  # shellcheck disable=SC2016  # expanded inside the container
  in_sc "$ns" box sh -c 'kill -9 $(pidof sleep)' || true
  wait_for "the consumer container to restart" 90 restarted_since "$ns" box "$before"
  wait_running "$ns" box 120
  expect_token "$ns" box "$token" "after the workload crashed"

  step "kill the provider container (SIGKILL from the node)"
  local provider_id pids
  before="$(restart_count "$ns" box-provider)"
  provider_id="$(kc -n "$ns" get pod box-provider -o 'jsonpath={.status.containerStatuses[0].containerID}')"
  provider_id="${provider_id#*://}"
  pids="$(container_pids "$provider_id")"
  [[ -n "$pids" ]] || fail "no process found for the provider container $provider_id"
  # shellcheck disable=SC2086
  kill -KILL $pids
  wait_for "the provider container to restart" 90 restarted_since "$ns" box-provider "$before"
  wait_running "$ns" box 120
  expect_token "$ns" box "$token" "after the provider was killed"

  step "restart the node plugin (delete its pod); then stop/start through the new one"
  kc -n "$PRODUCT_NAMESPACE" delete pod -l app.kubernetes.io/component=node --wait=true >/dev/null
  wait_for "the node plugin to be back" 120 node_plugin_ready
  expect_token "$ns" box "$token" "while the node plugin restarted"
  kc sc -n "$ns" restart box --wait --timeout 3m >/dev/null
  wait_running "$ns" box 120
  expect_token "$ns" box "$token" "after a restart through the new node plugin"

  step "restart the operator (delete its pod); then stop/start through the new one"
  kc -n "$PRODUCT_NAMESPACE" delete pod -l app.kubernetes.io/component=operator --wait=true >/dev/null
  wait_for "the operator to be back" 120 operator_ready
  expect_eq "phase while the operator restarted" Running "$(sc_phase "$ns" box)"
  kc sc -n "$ns" restart box --wait --timeout 3m >/dev/null
  wait_running "$ns" box 120
  expect_token "$ns" box "$token" "after a restart through the new operator"
}

# --- 4. node reboot ----------------------------------------------------------------------------

scenario_node_reboot() {
  local ns=e2e-durable token
  phase_is "$ns" box Running || fail "needs the Running StoppableContainer $ns/box of the restart scenario"
  token="$(in_sc "$ns" box cat /root/durable.txt)"
  [[ -n "$token" ]] || fail "no /root/durable.txt in $ns/box"
  step "cluster.sh reboot-node: every pod and mount gone, kubelet and containerd start again"
  local before
  before="$(restart_count "$ns" box)"
  "$PRODUCT_CLUSTER" reboot-node >&2
  wait_for "the node plugin to be back" 180 node_plugin_ready
  # Right after the reboot the API still shows the pod Running and Ready from before it: wait for
  # kubelet to have started the workload's container again.
  wait_for "the workload container to start again after the reboot" 300 restarted_since "$ns" box "$before"
  wait_running "$ns" box 300
  expect_token "$ns" box "$token" "after the node reboot"
  in_sc "$ns" box sh -c 'echo after-reboot > /root/after-reboot.txt'
  expect_eq "a write after the reboot" after-reboot "$(in_sc "$ns" box cat /root/after-reboot.txt)"
  kc sc -n "$ns" delete box --timeout 2m >/dev/null
}

# --- 5. image change while stopped ---------------------------------------------------------------

scenario_image_change() {
  local ns=e2e-image token
  token="$(random_token)"
  fresh_namespace "$ns"
  kc sc -n "$ns" create img --image sc-test/busybox:1 -- sleep 1000000 >/dev/null
  wait_running "$ns" img 240
  in_sc "$ns" img sh -c "echo $token > /root/user-file"
  expect_eq "/etc/debian_version on busybox" absent "$(in_sc "$ns" img sh -c 'cat /etc/debian_version 2>/dev/null || echo absent')"

  step "stop, change the image to sc-test/debian:bookworm, start"
  kc sc -n "$ns" stop img --wait --timeout 2m >/dev/null
  kc -n "$ns" patch stoppablecontainer img --type=json \
    -p '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"sc-test/debian:bookworm"}]' >/dev/null
  kc sc -n "$ns" start img --wait --timeout 3m >/dev/null
  wait_running "$ns" img 180
  step "the new image is the base, the user's file is on top"
  expect_contains "/etc/debian_version" "$(in_sc "$ns" img cat /etc/debian_version)" "12"
  # shellcheck disable=SC2016  # a dpkg-query format, not a shell expansion
  expect_contains "the new base's tools" "$(in_sc "$ns" img dpkg-query -W -f '${Package}\n' bash)" bash
  expect_eq "the user's file" "$token" "$(in_sc "$ns" img cat /root/user-file)"
  expect_eq "provider image" sc-test/debian:bookworm \
    "$(kc -n "$ns" get pod img-provider -o 'jsonpath={.spec.containers[0].image}')"
  kc sc -n "$ns" delete img --timeout 2m >/dev/null
}

# --- 8. a hostile tenant ------------------------------------------------------------------------
# Everything here is done as the tenant: a service account with Kubernetes' `edit` role in its own
# namespace (which the chart's aggregated roles extend), the rights the threat model grants.

readonly TENANT_NS=e2e-tenant
tenant() { kc --as="system:serviceaccount:$TENANT_NS:tenant" -n "$TENANT_NS" "$@"; }
tenant_can() { tenant auth can-i "$@" 2>/dev/null || true; }
instance_field() { kc -n "$TENANT_NS" get stoppablecontainerinstance box -o "jsonpath=$1" 2>/dev/null; }
pod_uid() { kc -n "$1" get pod "$2" -o 'jsonpath={.metadata.uid}' 2>/dev/null || true; }
sc_events() {
  kc -n "$1" get events --field-selector "involvedObject.kind=StoppableContainer,involvedObject.name=$2" \
    -o 'jsonpath={range .items[*]}{.type} {.reason}: {.message}{"\n"}{end}' 2>/dev/null
}
has_warning_about() { [[ "$(sc_events "$1" "$2")" == *"Warning "*"$3"* ]]; }
# No overlay anywhere on the node has the node's own / as its lower layer.
expect_no_node_root_lower() {
  expect_eq "overlays with lowerdir=/ on the node" "" "$(grep -F 'lowerdir=/,' /proc/self/mountinfo || true)"
}
expect_the_image_and_nothing_of_the_node() {
  local what="$1"
  expect_eq "/bin/busybox in the rootfs ($what)" "$(sha256sum /bin/busybox | cut -d' ' -f1)" \
    "$(in_sc "$TENANT_NS" box sha256sum /bin/busybox | cut -d' ' -f1)"
  expect_eq "the node's kubelet dir seen from inside ($what)" absent \
    "$(in_sc "$TENANT_NS" box sh -c 'test -e /var/lib/kubelet && echo present || echo absent')"
  expect_eq "the node's data root seen from inside ($what)" absent \
    "$(in_sc "$TENANT_NS" box sh -c "test -e $NODE_DATA_ROOT && echo present || echo absent")"
  expect_eq "the tenant's own file ($what)" mine "$(in_sc "$TENANT_NS" box cat /root/mine)"
  expect_no_node_root_lower
}

scenario_hostile_tenant() {
  fresh_namespace "$TENANT_NS"
  kc -n "$TENANT_NS" create serviceaccount tenant >/dev/null
  kc -n "$TENANT_NS" create rolebinding tenant-edit --clusterrole=edit --serviceaccount="$TENANT_NS:tenant" >/dev/null
  step "the shipped roles: the tenant manages StoppableContainers and pods, reads instances, writes no instance and no status"
  expect_eq "create stoppablecontainers" yes "$(tenant_can create stoppablecontainers.stoppablecontainer.xtlsoft.top)"
  expect_eq "get stoppablecontainerinstances" yes "$(tenant_can get stoppablecontainerinstances.stoppablecontainer.xtlsoft.top)"
  expect_eq "create pods" yes "$(tenant_can create pods)"
  local denied
  for denied in "patch stoppablecontainerinstances.stoppablecontainer.xtlsoft.top" \
    "create stoppablecontainerinstances.stoppablecontainer.xtlsoft.top" \
    "patch stoppablecontainers.stoppablecontainer.xtlsoft.top --subresource=status" \
    "patch stoppablecontainerinstances.stoppablecontainer.xtlsoft.top --subresource=status"; do
    # shellcheck disable=SC2086  # the words are kubectl's arguments
    expect_eq "$denied" no "$(tenant_can $denied)"
  done

  tenant apply -f "$SCENARIO_MANIFESTS/tenant-box.yaml" >/dev/null
  wait_running "$TENANT_NS" box 240
  in_sc "$TENANT_NS" box sh -c 'echo mine > /root/mine'

  step "the tenant deletes the provider pod while the workload runs: a Warning, a new provider at once"
  local old_provider new_provider
  old_provider="$(pod_uid "$TENANT_NS" box-provider)"
  tenant delete pod box-provider --wait=false >/dev/null
  wait_for "a new provider pod" 60 bash -c \
    "uid=\$(kubectl -n $TENANT_NS get pod box-provider -o 'jsonpath={.metadata.uid}' 2>/dev/null); [[ -n \$uid && \$uid != $old_provider ]]"
  wait_for "a Warning about the lost provider" 60 has_warning_about "$TENANT_NS" box box-provider
  wait_for "the new provider to run" 120 bash -c \
    "[[ \$(kubectl -n $TENANT_NS get pod box-provider -o 'jsonpath={.status.phase}') == Running ]]"
  new_provider="$(pod_uid "$TENANT_NS" box-provider)"
  expect_eq "the new provider is the one the operator recorded" "$new_provider" "$(instance_field '{.status.providerPodUID}')"
  expect_the_image_and_nothing_of_the_node "after the provider was replaced"
  expect_eq "every image file readable from the workload" ok "$(in_sc "$TENANT_NS" box sh -c 'ls -L /bin >/dev/null && echo ok')"

  step "stop; the tenant swaps the kept provider for its own pod (chroot into an emptyDir); start"
  tenant patch stoppablecontainer box --type=merge -p '{"spec":{"running":false}}' >/dev/null
  wait_for "box to stop" 120 bash -c "! kubectl -n $TENANT_NS get pod box >/dev/null 2>&1"
  local instance_uid hash forged_uid
  instance_uid="$(instance_field '{.metadata.uid}')"
  hash="$(kc -n "$TENANT_NS" get pod box-provider -o 'jsonpath={.metadata.annotations.stoppablecontainer\.xtlsoft\.top/provider-hash}')"
  tenant delete pod box-provider --wait=true >/dev/null
  # The UID from the create's answer: the operator may delete the impostor at once.
  forged_uid="$(sed -e "s/INSTANCE_UID/$instance_uid/; s/PROVIDER_HASH/$hash/" "$SCENARIO_MANIFESTS/forged-provider.yaml" |
    tenant create -f - -o 'jsonpath={.metadata.uid}')"
  # The operator may remove the impostor as soon as it sees it; otherwise it runs until the start.
  wait_for "the forged provider to run (or be removed)" 120 bash -c \
    "[[ \$(kubectl -n $TENANT_NS get pod box-provider -o 'jsonpath={.metadata.uid}/{.status.phase}') != $forged_uid/Pending ]]"
  tenant patch stoppablecontainer box --type=merge -p '{"spec":{"running":true}}' >/dev/null
  wait_for "a Warning naming the forged provider" 120 has_warning_about "$TENANT_NS" box box-provider
  wait_running "$TENANT_NS" box 240
  expect_contains "the operator says why" "$(sc_events "$TENANT_NS" box)" "not created by the operator"
  [[ "$(pod_uid "$TENANT_NS" box-provider)" != "$forged_uid" ]] || fail "the forged provider is still the provider"
  expect_eq "the provider in use is the recorded one" "$(pod_uid "$TENANT_NS" box-provider)" "$(instance_field '{.status.providerPodUID}')"
  expect_the_image_and_nothing_of_the_node "after the forged provider"

  step "a tenant writes past its rootfs's 256Mi: ENOSPC inside, the node's disk and the other SC untouched"
  tenant apply -f "$SCENARIO_MANIFESTS/tenant-filler.yaml" >/dev/null
  wait_running "$TENANT_NS" filler 240
  local free_before free_after dd_output
  free_before="$(df --output=avail -B1M "$NODE_DATA_ROOT" | tail -1)"
  dd_output="$(in_sc "$TENANT_NS" filler sh -c 'dd if=/dev/zero of=/root/big bs=1M count=1024 2>&1; sync' || true)"
  expect_contains "dd past the limit" "$dd_output" "No space left on device"
  free_after="$(df --output=avail -B1M "$NODE_DATA_ROOT" | tail -1)"
  ((free_before - free_after < 300)) || fail "the node lost $((free_before - free_after)) MiB to a 256Mi rootfs"
  expect_eq "the workload still runs" alive "$(in_sc "$TENANT_NS" filler echo alive)"
  in_sc "$TENANT_NS" box sh -c 'echo still-writable > /root/other' ||
    fail "another SC could not write while the filler's rootfs was full"
  expect_eq "the other SC's write" still-writable "$(in_sc "$TENANT_NS" box cat /root/other)"
  step "kubectl sc status shows the rootfs's own use against its limit (reported by the node plugin)"
  wait_for "the node plugin's report of the full rootfs in the status" 150 bash -c \
    "((\$(kubectl -n $TENANT_NS get stoppablecontainer filler -o 'jsonpath={.status.rootfs.usedBytes}' 2>/dev/null || echo 0) > 200 * 1024 * 1024))"
  expect_contains "kubectl sc status filler" "$(kc sc -n "$TENANT_NS" status filler)" "of 256Mi used"
  in_sc "$TENANT_NS" filler rm /root/big
  expect_eq "freeing space makes writes work again" ok \
    "$(in_sc "$TENANT_NS" filler sh -c 'dd if=/dev/zero of=/root/after bs=1M count=20 2>/dev/null && echo ok')"
  # Kubelet 1.20 removes a terminated pod's object on its own later sync; after the forged pods
  # above (its pod worker waits up to 2 minutes on the volumes of a deleted impostor) that took a
  # minute per pod here, so the deletion gets more time than the other scenarios give it.
  kc sc -n "$TENANT_NS" delete filler --timeout 5m >/dev/null

  step "stop; a hand-made pod named like the stopped SC, with forged labels and owner, gets nothing"
  tenant patch stoppablecontainer box --type=merge -p '{"spec":{"running":false}}' >/dev/null
  wait_for "box to stop" 120 bash -c "! kubectl -n $TENANT_NS get pod box >/dev/null 2>&1"
  local thief_uid
  thief_uid="$(sed -e "s/INSTANCE_UID/$instance_uid/" "$SCENARIO_MANIFESTS/forged-consumer.yaml" |
    tenant create -f - -o 'jsonpath={.metadata.uid}')"
  wait_for "FailedMount PermissionDenied for the forged consumer pod (or its removal by the operator)" 90 bash -c \
    "[[ \$(kubectl -n $TENANT_NS get events --field-selector involvedObject.name=box,reason=FailedMount -o 'jsonpath={.items[*].message}') == *PermissionDenied* ]] || ! kubectl -n $TENANT_NS get pod box >/dev/null 2>&1"
  expect_eq "CSI mounts in the forged pod's volume dir" "" "$(grep -F "/pods/$thief_uid/volumes/kubernetes.io~csi" /proc/self/mountinfo || true)"
  expect_eq "the forged pod's phase" Pending "$(kc -n "$TENANT_NS" get pod box -o 'jsonpath={.status.phase}' 2>/dev/null || echo Pending)"
  tenant delete pod box --ignore-not-found --wait=true >/dev/null
  expect_no_node_root_lower
  kc sc -n "$TENANT_NS" delete box --timeout 5m >/dev/null
}

# --- 9. any image runs as in a plain container -----------------------------------------------

readonly IMAGECFG_NS=e2e-imagecfg
# Cases: "<name>|<image>|<extra container fields as JSON, or empty>". Each runs as a plain pod
# p-<name> and as a StoppableContainer s-<name> of the same template; the two must agree.
readonly IMAGECFG_CASES=(
  'entry|sc-test/cfg-entrypoint:1|"env":[{"name":"OVERRIDE_ME","value":"pod"},{"name":"FROM_POD","value":"yes"}]'
  'args|sc-test/cfg-entrypoint:1|"args":["report","from-args"]'
  'user|sc-test/cfg-named-user:1|'
  'path|sc-test/cfg-custom-path:1|'
  'cmd|sc-test/cfg-workdir:1|"command":["report","from-command"]'
  'eponly|sc-test/cfg-entrypoint-only:1|'
  'uid|sc-test/cfg-named-user:1|"securityContext":{"runAsUser":1234}'
)

# Builds the scenario's images, imports them, and pushes the `:latest` one (pulled at every
# start, as kubelet does for `latest`) to the cluster's registry.
imagecfg_images() {
  local listing tag archive archives=()
  listing="$("$E2E_DIR/images/config-images.sh" "$E2E_WORK_DIR/images/config")"
  while read -r tag archive; do
    archives+=("$archive")
    if [[ "$tag" == *:latest || "$tag" == docker.io/* ]]; then
      "$PRODUCT_CLUSTER" push-image "$archive" "$tag" >&2
    fi
  done <<<"$listing"
  "$PRODUCT_CLUSTER" import-image "${archives[@]}" 2>&1 | grep -v '^unpacking' >&2 || true
}

imagecfg_container() {
  local image="$1" extra="$2"
  printf '{"name":"main","image":"%s"%s}' "$image" "${extra:+,$extra}"
}

imagecfg_apply() {
  local name="$1" image="$2" extra="$3" container
  container="$(imagecfg_container "$image" "$extra")"
  kc -n "$IMAGECFG_NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: p-$name}
spec:
  terminationGracePeriodSeconds: 5
  containers: [$container]
---
apiVersion: stoppablecontainer.xtlsoft.top/v1alpha1
kind: StoppableContainer
metadata: {name: s-$name}
spec:
  running: true
  template:
    spec:
      terminationGracePeriodSeconds: 5
      containers: [$container]
YAML
}

# What the report program printed (argv, id, cwd, environment), without the lines that must
# differ (HOSTNAME is the pod's name) or are the wrapper's own (sc-exec: progress).
imagecfg_report() {
  kc -n "$IMAGECFG_NS" logs "$1" 2>/dev/null | grep -E '^(argv|id|cwd|env): ' | grep -v '^env: HOSTNAME='
}
report_done() { kc -n "$IMAGECFG_NS" logs "$1" 2>/dev/null | grep -q '^report: done'; }
imagecfg_exec() { kc -n "$IMAGECFG_NS" exec "$1" -- "${@:2}" 2>&1; }
imagecfg_printenv() { imagecfg_exec "$1" printenv | grep -v '^HOSTNAME=' | sort; }

# imagecfg_compare CASE WHEN: the plain pod and the SC agree on the workload and on exec.
imagecfg_compare() {
  local name="$1" when="$2" plain sc
  wait_for "p-$name's report" 120 report_done "p-$name"
  wait_for "s-$name's report" 120 report_done "s-$name"
  plain="$(imagecfg_report "p-$name")"
  sc="$(imagecfg_report "s-$name")"
  [[ -n "$plain" ]] || fail "$name: the plain pod printed no report"
  [[ "$plain" == "$sc" ]] || fail "$name ($when): the workload differs from the plain pod's:
$(diff <(echo "$plain") <(echo "$sc") || true)"
  local probe
  for probe in id pwd; do
    expect_eq "$name ($when): kubectl exec $probe" "$(imagecfg_exec "p-$name" "$probe")" "$(imagecfg_exec "s-$name" "$probe")"
  done
  plain="$(imagecfg_printenv "p-$name")"
  sc="$(imagecfg_printenv "s-$name")"
  [[ "$plain" == "$sc" ]] || fail "$name ($when): kubectl exec printenv differs:
$(diff <(echo "$plain") <(echo "$sc") || true)"
}

scenario_image_config() {
  local ns=$IMAGECFG_NS entry name image extra
  fresh_namespace "$ns"
  step "pack images whose configs mimic real ones; push the :latest one to the cluster's registry"
  imagecfg_images

  step "each template as a plain pod and as a StoppableContainer: ${#IMAGECFG_CASES[@]} cases"
  for entry in "${IMAGECFG_CASES[@]}"; do
    IFS='|' read -r name image extra <<<"$entry"
    imagecfg_apply "$name" "$image" "$extra"
  done
  for entry in "${IMAGECFG_CASES[@]}"; do
    IFS='|' read -r name image extra <<<"$entry"
    wait_running "$ns" "s-$name" 240
    imagecfg_compare "$name" "first start"
  done
  step "what the image defines reached the workload (not only equal: right)"
  expect_contains "entrypoint ran, then CMD" "$(imagecfg_report s-entry)" "argv: /bin/sh /usr/local/bin/report from-cmd"
  expect_contains "the image's env" "$(imagecfg_report s-entry)" "env: GREETING=hello from the image"
  expect_contains "the pod's env wins by name" "$(imagecfg_report s-entry)" "env: OVERRIDE_ME=pod"
  expect_contains "args follow the entrypoint" "$(imagecfg_report s-args)" "argv: /bin/sh /usr/local/bin/report from-args"
  expect_contains "the image's named user" "$(imagecfg_report s-user)" "id: uid=1000(jovyan) gid=100(users)"
  expect_contains "the image's working dir" "$(imagecfg_report s-user)" "cwd: /home/jovyan"
  expect_eq "a program only on the image's PATH, through kubectl exec" "python from /opt/conda/bin: hi" \
    "$(imagecfg_exec s-path python hi)"
  expect_contains "command only: CMD dropped, WORKDIR kept" "$(imagecfg_report s-cmd)" "argv: /bin/sh /usr/local/bin/report from-command"
  expect_contains "entrypoint only" "$(imagecfg_report s-eponly)" "argv: /bin/sh /usr/local/bin/report entrypoint-only"

  step "stop and start every StoppableContainer; compare again"
  for entry in "${IMAGECFG_CASES[@]}"; do
    IFS='|' read -r name _ <<<"$entry"
    kc sc -n "$ns" stop "s-$name" --wait --timeout 2m >/dev/null
  done
  for entry in "${IMAGECFG_CASES[@]}"; do
    IFS='|' read -r name _ <<<"$entry"
    kc sc -n "$ns" start "s-$name" >/dev/null
  done
  for entry in "${IMAGECFG_CASES[@]}"; do
    IFS='|' read -r name _ <<<"$entry"
    wait_running "$ns" "s-$name" 240
    imagecfg_compare "$name" "after stop/start"
  done

  step "a new image while stopped: the next start runs the new image's ENTRYPOINT and CMD"
  kc sc -n "$ns" stop s-eponly --wait --timeout 2m >/dev/null
  kc -n "$ns" patch stoppablecontainer s-eponly --type=json \
    -p '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"sc-test/cfg-entrypoint:1"}]' >/dev/null
  kc sc -n "$ns" start s-eponly >/dev/null
  wait_running "$ns" s-eponly 240
  wait_for "s-eponly's report" 60 report_done s-eponly
  expect_contains "the new image's CMD" "$(imagecfg_report s-eponly)" "argv: /bin/sh /usr/local/bin/report from-cmd"
  expect_contains "the new image's entrypoint" "$(imagecfg_report s-eponly)" "env: ENTRYPOINT_RAN=yes"

  step "runAsNonRoot against an image user given by name: refused with kubelet's words"
  imagecfg_apply nonroot sc-test/cfg-named-user:1 '"securityContext":{"runAsNonRoot":true}'
  local refusal='container has runAsNonRoot and image has non-numeric user (jovyan), cannot verify user is non-root'
  wait_for "kubelet's refusal of p-nonroot" 60 bash -c \
    "kubectl -n $ns get pod p-nonroot -o jsonpath='{.status.containerStatuses[0].state.waiting.message}' | grep -qF '$refusal'"
  wait_for "the same refusal in s-nonroot's status" 90 bash -c \
    "kubectl sc -n $ns status s-nonroot | grep -qF '$refusal'"

  step "kubectl sc create with no command runs the image's entrypoint"
  kc sc -n "$ns" create plain-create --image sc-test/cfg-entrypoint-only:1 >/dev/null
  wait_running "$ns" plain-create 180
  wait_for "plain-create's report" 60 report_done plain-create
  expect_contains "the entrypoint ran" "$(imagecfg_report plain-create)" "argv: /bin/sh /usr/local/bin/report entrypoint-only"

  step "an image that does not exist: the pull error in kubectl sc status within 30 s; fixing the image starts it"
  kc sc -n "$ns" create ghost --image "$SC_E2E_REGISTRY/sc-test/does-not-exist:1" >/dev/null
  wait_for "the pull error in kubectl sc status" 30 bash -c \
    "kubectl sc -n $ns status ghost | grep -qE 'ErrImagePull|ImagePullBackOff'"
  kc sc -n "$ns" status ghost >&2 || true
  kc -n "$ns" patch stoppablecontainer ghost --type=json \
    -p '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"sc-test/cfg-entrypoint-only:1"}]' >/dev/null
  wait_running "$ns" ghost 240
  wait_for "ghost's report" 60 report_done ghost
}

# --- 10. the old project's Istio and Vault examples -----------------------------------------

scenario_seed_examples() {
  local ns=e2e-seeds ip
  fresh_namespace "$ns"
  step "images of the same config in place of nginx:1.25 and my-app:latest (the latter from the registry)"
  imagecfg_images
  kc -n "$ns" create serviceaccount my-app-sa >/dev/null
  step "apply the seed's Istio (web-app) and Vault (secure-app) examples unchanged"
  kc -n "$ns" apply -f "$REPO_DIR/operator/tests/fixtures/istio.yaml" >/dev/null
  kc -n "$ns" apply -f "$REPO_DIR/operator/tests/fixtures/vault.yaml" >/dev/null
  wait_running "$ns" web-app 240
  wait_running "$ns" secure-app 240
  step "they serve what their entrypoints serve"
  ip="$(kc -n "$ns" get pod web-app -o 'jsonpath={.status.podIP}')"
  expect_contains "web-app on :80" "$("$PRODUCT_CLUSTER" netns curl -fsS --max-time 10 "http://$ip:80/")" "Welcome to nginx!"
  expect_contains "web-app's entrypoint ran" "$(kc -n "$ns" logs web-app)" "Configuration complete; ready for start up"
  ip="$(kc -n "$ns" get pod secure-app -o 'jsonpath={.status.podIP}')"
  expect_contains "secure-app on :8080" "$("$PRODUCT_CLUSTER" netns curl -fsS --max-time 10 "http://$ip:8080/")" "my-app is serving"
  expect_contains "secure-app's image env" "$(kc -n "$ns" logs secure-app)" "in production"
}

# "ID|NEEDS|FUNCTION|TITLE", in the order they run. NEEDS: the IDs whose leftovers this one uses
# (6 deletes 1's StoppableContainer, 4 reboots the node under 3's); each comes earlier in the
# table, and `tests/e2e/run.sh 6` runs 1 first. 11 and 13 replace the node, which ends every
# node-local StoppableContainer still there, so they run last. lib/scenarios-storage.sh holds 11-13
# and PENDING_SCENARIOS (run only when named).
readonly SCENARIOS=(
  "1||scenario_persistence|persistence: create, write, add a user, install a binary, stop, start"
  "7||scenario_legacy_manifests|manifests of the old operator: PodSpec form and template.container"
  "6|1|scenario_isolation_and_delete|isolation: foreign pods get nothing; delete leaves nothing on the node"
  "2||scenario_unprivileged|unprivileged workload: capabilities, /proc, exec -it, cp, logs, readiness"
  "3||scenario_crashes_and_restarts|crashes and restarts: workload, provider, node plugin, operator"
  "4|3|scenario_node_reboot|node reboot"
  "5||scenario_image_change|image change while stopped"
  "8||scenario_hostile_tenant|a hostile tenant: forged provider and consumer pods, a lost provider, the shipped roles"
  "9||scenario_image_config|any image runs as in a plain container: entrypoint, cmd, env, user, workdir, exec, pull errors"
  "10||scenario_seed_examples|the old project's Istio and Vault examples serve what their images serve"
  "11||scenario_storage_harness|the harness: a claim of the default class on a loop-backed ext4 PV; replace-node brings a Deployment and the node plugin back on a new node"
  "12||scenario_storage_journey|spec.storage: files and an 8 MiB blob over stop (no pod) and start, quota, Delete and Retain"
  "13||scenario_storage_node_replacement|spec.storage: node replacement brings a running and a stopped SC back with every file"
)
