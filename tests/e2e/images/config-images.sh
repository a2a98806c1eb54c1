#!/usr/bin/env bash
# The image scripts below are written literally: their $ expand when they run, not here.
# shellcheck disable=SC2016
# Builds the images of e2e scenario 9 ("any image runs as in a plain container"): small busybox
# images whose configs mimic real ones, as docker-archive tars.
#   sc-test/cfg-entrypoint:1       ENTRYPOINT a script that execs CMD (like postgres, nginx); Env
#   sc-test/cfg-named-user:1       USER given by name (jovyan), WORKDIR its home, a second group
#   sc-test/cfg-custom-path:1      PATH with /opt/conda/bin first; `python` lives only there
#   sc-test/cfg-workdir:1          WORKDIR /srv/app
#   sc-test/cfg-entrypoint-only:1  ENTRYPOINT only, no CMD
#   docker.io/library/nginx:1.25   the seed's Istio example: nginx's ENTRYPOINT/CMD; busybox httpd serves :80
#   docker.io/library/my-app:latest  the seed's Vault example: serves :8080 (pushed to the registry)
# Every image holds /usr/local/bin/report, which prints what the runtime made of its process
# (argv, id, cwd, environment), and a `printenv` (Debian's busybox has none).
#
# Usage: config-images.sh OUT_DIR   prints "<tag> <archive path>" per image. Archives are named
# after a hash of their inputs, so an unchanged recipe reuses the archive in OUT_DIR.
set -euo pipefail

IMAGES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly IMAGES_DIR
readonly PACK="$IMAGES_DIR/pack-image.py"
readonly STANDARD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=tests/lib/common.sh
source "$IMAGES_DIR/../../lib/common.sh"
# shellcheck source=tests/e2e/images/rootfs.sh
source "$IMAGES_DIR/rootfs.sh"
: "${SC_LOG_TAG:=config-images}"

# write_file ROOTFS PATH MODE CONTENT
write_file() {
  mkdir -p "$(dirname "$1/$2")"
  printf '%s\n' "$4" >"$1/$2"
  chmod "$3" "$1/$2"
}

readonly REPORT_SCRIPT='#!/bin/sh
# Prints what the container runtime made of this process, then waits for SIGTERM.
echo "argv: $(tr "\0" " " </proc/$$/cmdline)"
echo "id: $(id)"
echo "cwd: $(pwd)"
env | sort | sed "s/^/env: /"
echo "report: done"
trap "exit 0" TERM INT
while :; do sleep 3600 & wait $!; done'

readonly PRINTENV_SCRIPT='#!/bin/sh
# printenv [NAME...], as coreutils has it.
[ $# -eq 0 ] && exec env
status=0
for name in "$@"; do
  if env | grep -q "^$name="; then env | sed -n "s/^$name=//p"; else status=1; fi
done
exit $status'

# common_rootfs DIR: busybox plus the report and printenv programs.
common_rootfs() {
  busybox_rootfs "$1"
  mkdir -p "$1/usr/local/bin" "$1/usr/local/sbin"
  write_file "$1" usr/local/bin/report 0755 "$REPORT_SCRIPT"
  write_file "$1" usr/local/bin/printenv 0755 "$PRINTENV_SCRIPT"
}

customize_entrypoint() {
  write_file "$1" docker-entrypoint.sh 0755 '#!/bin/sh
set -e
export ENTRYPOINT_RAN=yes
exec "$@"'
}

customize_named_user() {
  printf '%s\n' 'jovyan:x:1000:100:Jupyter user:/home/jovyan:/bin/sh' >>"$1/etc/passwd"
  printf '%s\n' 'users:x:100:' 'notebook:x:2000:jovyan' >>"$1/etc/group"
  mkdir -p "$1/home/jovyan"
  write_file "$1" home/jovyan/.profile 0644 'export FROM_PROFILE=yes'
  chown -R 1000:100 "$1/home/jovyan"
}

customize_custom_path() {
  write_file "$1" opt/conda/bin/python 0755 '#!/bin/sh
echo "python from /opt/conda/bin: $*"'
}

customize_workdir() {
  write_file "$1" srv/app/marker 0644 'the image workdir'
}

customize_nginx() {
  mkdir -p "$1/usr/share/nginx/html" "$1/docker-entrypoint.d"
  write_file "$1" usr/share/nginx/html/index.html 0644 '<h1>Welcome to nginx!</h1>'
  write_file "$1" docker-entrypoint.sh 0755 '#!/bin/sh
set -e
echo "/docker-entrypoint.sh: Configuration complete; ready for start up"
exec "$@"'
  # Stands in for nginx: `nginx -g "daemon off;"` serves the html root on :80 in the foreground.
  write_file "$1" bin/nginx 0755 '#!/bin/sh
exec httpd -f -v -p 80 -h /usr/share/nginx/html'
}

customize_my_app() {
  write_file "$1" app/www/index.html 0644 "my-app is serving"
  write_file "$1" app/server 0755 '#!/bin/sh
echo "my-app: serving on :8080 as $(id -un) in $APP_ENV"
exec httpd -f -v -p 8080 -h /app/www'
}

# pack OUT_DIR TAG NAME CUSTOMIZE PACK_FLAGS...
pack() {
  local out_dir="$1" tag="$2" name="$3" customize="$4"
  shift 4
  local key archive rootfs
  key="$(content_key "$tag $* $(declare -f "$customize") $REPORT_SCRIPT $PRINTENV_SCRIPT" /bin/busybox "$PACK" \
    "$IMAGES_DIR/rootfs.sh")"
  archive="$out_dir/$name-$key.tar"
  if [[ ! -f "$archive" ]]; then
    log "building $tag"
    rootfs="$(mktemp -d "$out_dir/.cfg-rootfs.XXXXXX")"
    common_rootfs "$rootfs"
    "$customize" "$rootfs"
    python3 "$PACK" --rootfs "$rootfs" --tag "$tag" --output "$archive" "$@"
    rm -rf "$rootfs"
  fi
  echo "$tag $archive"
}

main() {
  if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
  fi
  local out_dir="$1"
  mkdir -p "$out_dir"
  rm -rf "$out_dir"/.cfg-rootfs.*
  pack "$out_dir" sc-test/cfg-entrypoint:1 cfg-entrypoint customize_entrypoint \
    --entrypoint '["/docker-entrypoint.sh"]' --cmd '["report", "from-cmd"]' \
    --env "PATH=$STANDARD_PATH" --env "GREETING=hello from the image" --env OVERRIDE_ME=image
  pack "$out_dir" sc-test/cfg-named-user:1 cfg-named-user customize_named_user \
    --cmd '["report"]' --user jovyan --workdir /home/jovyan --env "PATH=$STANDARD_PATH"
  pack "$out_dir" sc-test/cfg-custom-path:1 cfg-custom-path customize_custom_path \
    --cmd '["report"]' --env "PATH=/opt/conda/bin:$STANDARD_PATH" --env CONDA_PREFIX=/opt/conda
  pack "$out_dir" sc-test/cfg-workdir:1 cfg-workdir customize_workdir \
    --cmd '["report", "from-cmd"]' --workdir /srv/app --env "PATH=$STANDARD_PATH"
  pack "$out_dir" sc-test/cfg-entrypoint-only:1 cfg-entrypoint-only true \
    --entrypoint '["/usr/local/bin/report", "entrypoint-only"]' --env "PATH=$STANDARD_PATH"
  pack "$out_dir" docker.io/library/nginx:1.25 nginx customize_nginx \
    --entrypoint '["/docker-entrypoint.sh"]' --cmd '["nginx", "-g", "daemon off;"]' \
    --env "PATH=$STANDARD_PATH" --env NGINX_VERSION=1.25.5
  pack "$out_dir" docker.io/library/my-app:latest my-app customize_my_app \
    --entrypoint '["/app/server"]' --env "PATH=$STANDARD_PATH" --env APP_ENV=production
}

main "$@"
