# shellcheck shell=bash disable=SC2154  # the paths and names are cluster.sh's constants
# Process supervision and cleanup of the e2e cluster: every component is started in the cluster's
# network namespace and stopped by its recorded PID (only while that PID still runs the recorded
# executable); pods, shims and mounts left behind are found and removed. Sourced by cluster.sh
# after its constants (PID_DIR, LOG_DIR, E2E_NETNS_PATH, CONTAINERD_DIR, CONTAINERD_SOCK).

# --- processes ---------------------------------------------------------------------------

# A component is ours only if its recorded PID still runs the recorded executable, so a
# reused PID is never signalled.
component_pid() {
  local name="$1" pid exe
  [[ -f "$PID_DIR/$name.pid" && -f "$PID_DIR/$name.exe" ]] || return 1
  pid="$(<"$PID_DIR/$name.pid")"
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
  [[ "${exe% (deleted)}" == "$(<"$PID_DIR/$name.exe")" ]] || return 1
  echo "$pid"
}

is_running() { component_pid "$1" >/dev/null; }

# Fails fast when a component started by this `up` has died, instead of waiting for a timeout.
started_components_alive() {
  local pid_file name
  for pid_file in "$PID_DIR"/*.pid; do
    [[ -e "$pid_file" ]] || continue
    name="$(basename "$pid_file" .pid)"
    is_running "$name" || die "$name exited; see $LOG_DIR/$name.log"
  done
}

# Starts a long-running component inside the netns, in its own session (so it outlives this
# script and ignores the terminal's signals), logging to $LOG_DIR/<name>.log.
start_component() {
  local name="$1" exe="$2"
  shift 2
  [[ -x "$exe" ]] || die "$exe is missing; did the build succeed?"
  local log_file="$LOG_DIR/$name.log"
  # Without job control the background child is not a group leader, so setsid does not fork
  # and nsenter execs in place: $! is the component's own PID.
  setsid nsenter --net="$E2E_NETNS_PATH" -- "$exe" "$@" </dev/null >>"$log_file" 2>&1 &
  echo "$!" >"$PID_DIR/$name.pid"
  echo "$exe" >"$PID_DIR/$name.exe"
  for _ in $(seq 1 20); do
    is_running "$name" && return 0
    kill -0 "$(<"$PID_DIR/$name.pid")" 2>/dev/null || break
    sleep 0.1
  done
  is_running "$name" || die "$name exited right after start; see $log_file"
}

wait_for_pid_exit() {
  local pid="$1" timeout_tenths="$2" waited=0
  while [[ -d "/proc/$pid" ]] && ((waited < timeout_tenths)); do
    # A zombie whose parent is gone is reaped by init; treat it as exited.
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && return 0
    sleep 0.1
    waited=$((waited + 1))
  done
  [[ ! -d "/proc/$pid" ]]
}

stop_component() {
  local name="$1" pid
  if pid="$(component_pid "$name")"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for_pid_exit "$pid" 150; then
      log "$name did not exit after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_for_pid_exit "$pid" 50 || log "warning: $name (pid $pid) is still there"
    fi
  fi
  rm -f "$PID_DIR/$name.pid" "$PID_DIR/$name.exe"
}

# Containers are not children of containerd: kill what runs in kubelet's pod cgroups.
kill_pod_processes() {
  local round pids
  for round in 1 2 3 4 5 6 7 8 9 10; do
    pids="$(find /sys/fs/cgroup/*/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null |
      sort -un || true)"
    [[ -n "$pids" ]] || return 0
    ((round == 1)) && log "killing $(wc -w <<<"$pids") pod processes"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.3
  done
  log "warning: pod processes survived SIGKILL: $pids"
}

# containerd's shims outlive containerd; each one recorded its PID under containerd's state.
kill_containerd_shims() {
  local pid_file pid
  while IFS= read -r pid_file; do
    pid="$(<"$pid_file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    # Only a shim started for our containerd carries our socket in its command line.
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$CONTAINERD_SOCK"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done < <(find "$CONTAINERD_DIR/state" -name shim.pid 2>/dev/null)
  # Shims whose state dir was already gone: find them by our (unique) socket path.
  local proc
  for proc in /proc/[0-9]*; do
    if tr '\0' ' ' 2>/dev/null <"$proc/cmdline" | grep -qF -- "-address $CONTAINERD_SOCK "; then
      kill -KILL "${proc#/proc/}" 2>/dev/null || true
    fi
  done
}

# --- mounts ------------------------------------------------------------------------------

mounts_under() {
  # Field 5 of mountinfo is the mount point (octal-escaped; our paths have no spaces).
  awk -v dir="$1" '$5 == dir || index($5, dir "/") == 1 { print $5 }' /proc/self/mountinfo
}

unmount_tree() {
  local dir="$1" mount_point
  for _ in 1 2 3 4 5; do
    local remaining
    remaining="$(mounts_under "$dir" | sort -ru)"
    [[ -n "$remaining" ]] || return 0
    while IFS= read -r mount_point; do
      umount "$mount_point" 2>/dev/null || umount -l "$mount_point" 2>/dev/null || true
    done <<<"$remaining"
  done
  if [[ -n "$(mounts_under "$dir")" ]]; then
    log "warning: still mounted under $dir:"
    mounts_under "$dir" >&2
    return 1
  fi
}

# Deletes a directory tree only when nothing is mounted below it (never crosses into a mount).
remove_tree() {
  local dir="$1"
  [[ -e "$dir" ]] || return 0
  if [[ -n "$(mounts_under "$dir")" ]]; then
    log "warning: not removing $dir: something is still mounted below it"
    return 1
  fi
  rm -rf --one-file-system "$dir"
}
