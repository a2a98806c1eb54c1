# shellcheck shell=bash
# The end-to-end scenarios of the user's layer (issue 15): `kubectl sc diff` of a running and of a
# stopped StoppableContainer, as a tenant with the `edit` role and no node access, and the layer
# volume refused to a pod of another namespace. Sourced by tests/e2e/run.sh after scenarios.sh,
# whose helpers it uses.

readonly LAYER_NS=e2e-layer

# A kubeconfig that authenticates as service account SA of namespace NS (its token secret), for
# `kubectl sc`, which has no --as. Prints its path.
service_account_kubeconfig() {
  local ns="$1" sa="$2" file secret token
  file="$(mktemp "${TMPDIR:-/tmp}/sc-e2e-$sa.XXXXXX.kubeconfig")"
  wait_for "the token secret of service account $ns/$sa" 60 bash -c \
    "[[ -n \$(kubectl -n $ns get serviceaccount $sa -o 'jsonpath={.secrets[0].name}' 2>/dev/null) ]]"
  secret="$(kc -n "$ns" get serviceaccount "$sa" -o 'jsonpath={.secrets[0].name}')"
  token="$(kc -n "$ns" get secret "$secret" -o 'jsonpath={.data.token}' | base64 -d)"
  kc config view --raw --minify >"$file"
  KUBECONFIG="$file" "$E2E_HOST_KUBECTL" config set-credentials "$sa" --token="$token" >/dev/null
  KUBECONFIG="$file" "$E2E_HOST_KUBECTL" config set-context --current --user="$sa" --namespace="$ns" >/dev/null
  printf '%s\n' "$file"
}

# The `C|A|D path` lines of a `kubectl sc diff -o json` report, one per entry, opaque dirs marked.
diff_lines() {
  jq -r '.entries[] | "\(.change) \(.path)\(if .opaque then " opaque" else "" end)"'
}

scenario_layer_diff() {
  local ns="$LAYER_NS" kubeconfig expected actual
  fresh_namespace "$ns"
  kc -n "$ns" create serviceaccount tenant >/dev/null
  kc -n "$ns" create rolebinding tenant-edit --clusterrole=edit --serviceaccount="$ns:tenant" >/dev/null
  kubeconfig="$(service_account_kubeconfig "$ns" tenant)"
  as_tenant() { kc sc --kubeconfig "$kubeconfig" "$@"; }

  step "as the tenant: create, then add, change and delete files, and replace a directory"
  as_tenant create lay --image sc-test/busybox:1 -- sleep 1000000 >/dev/null
  wait_running "$ns" lay 240
  in_sc "$ns" lay sh -c 'echo added > /root/added && echo "staff:x:50:" >> /etc/group && rm /bin/vi && rm -r /var && mkdir /var && echo new > /var/new'

  expected="$(printf '%s\n' 'changed /bin' 'deleted /bin/vi' 'changed /etc' 'changed /etc/group' \
    'changed /root' 'added /root/added' 'changed /var opaque' 'added /var/new')"
  step "diff of the running SC: exactly those changes"
  actual="$(as_tenant diff lay -o json | diff_lines)"
  expect_eq "diff of the running SC" "$expected" "$actual"
  expect_contains "the text form" "$(as_tenant diff lay)" "D /bin/vi"
  expect_eq "diff /root" "$(printf '%s\n' 'changed /root' 'added /root/added')" "$(as_tenant diff lay /root -o json | diff_lines)"
  expect_contains "--stat" "$(as_tenant diff lay --stat)" "/var"

  step "diff of the stopped SC: the same, and no pod of it left running"
  as_tenant stop lay --wait --timeout 2m >/dev/null
  actual="$(as_tenant diff lay -o json | diff_lines)"
  expect_eq "diff of the stopped SC" "$expected" "$actual"
  expect_eq "layer pods left" "" "$(kc -n "$ns" get pods -l stoppablecontainer.xtlsoft.top/layer-of=lay -o name)"

  step "a pod of another namespace naming this SC's layer gets nothing"
  fresh_namespace e2e-layer-other
  kc -n e2e-layer-other apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: thief
spec:
  nodeName: $(sc_field "$ns" lay '{.status.dataNodeName}')
  containers:
    - name: thief
      image: sc-test/busybox:1
      command: ["sleep", "1000000"]
      volumeMounts: [{name: layer, mountPath: /stolen, readOnly: true}]
  volumes:
    - name: layer
      csi:
        driver: rootfs.stoppablecontainer.xtlsoft.top
        readOnly: true
        volumeAttributes: {stoppablecontainer.xtlsoft.top/layer-of: lay}
EOF
  wait_for "a FailedMount event for the thief's layer volume" 90 bash -c \
    "kubectl -n e2e-layer-other get events --field-selector involvedObject.name=thief,reason=FailedMount -o name | grep -q ."
  [[ "$(kc -n e2e-layer-other get pod thief -o 'jsonpath={.status.phase}')" == Pending ]] || fail "the thief's pod started"
  kc delete namespace e2e-layer-other --wait=false >/dev/null

  as_tenant delete lay --timeout 2m >/dev/null
  rm -f "$kubeconfig"
}
