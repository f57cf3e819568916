#!/usr/bin/env bash
# Runs a command of the project in a brand-new minimal Debian 12 root, the way a new user's
# machine starts: only Debian's required packages plus git and ca-certificates (what a user has
# after `apt-get install git` to clone). It catches an install step that works only because a
# package happened to be on the developer's or the CI machine (it did: oneDNN's CMake package
# needs the OpenCL headers, which nothing installed).
#
# Usage (as root):  scripts/check-fresh-machine.sh [COMMAND...]
#   default COMMAND: ./scripts/quickstart.sh --set train.steps=50
#   .ci/run runs the default after the suite when it runs as root with CI=true.
# The root is made by mmdebstrap (installed when missing) from the Debian sources this machine's
# apt uses (/etc/apt/sources.list.d/*.sources and /etc/apt/sources.list; never a hard-coded
# mirror). The project's tracked files (git ls-files, as they are in the work tree) are copied
# to /root/hokusai inside it; COMMAND runs there under `bash -lc` with a clean environment,
# CI=true and no terminal, with /dev, /proc, /sys and a tmpfs /dev/shm (Open MPI's shared memory)
# mounted. Exit status is COMMAND's (124 after HOKUSAI_FRESH_TIMEOUT seconds, default 3600).
# Environment:
#   HOKUSAI_FRESH_ROOT=DIR   where the root is made (default /tmp/hokusai-fresh-root); it is kept
#                            after the run for a look at a failure, and replaced by the next run
#   HOKUSAI_FRESH_KEEP_BASE=1  reuse the bare base system of an earlier run (DIR.base.tar); the
#                            project and everything it installs are fresh either way
set -euo pipefail
cd "$(dirname "$0")/.."
project=$PWD
if [ $# -eq 0 ]; then set -- ./scripts/quickstart.sh --set train.steps=50; fi
cmd=$*
root=${HOKUSAI_FRESH_ROOT:-/tmp/hokusai-fresh-root}
base=$root.base.tar
say() { echo "check-fresh-machine: $*"; }

if [ "$(id -u)" -ne 0 ]; then
  say "needs root (mmdebstrap, chroot and mounts): run it as root or with sudo" >&2
  exit 2
fi
if ! command -v mmdebstrap >/dev/null; then
  say "installing mmdebstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi

# Debian's own sources as apt on this machine has them: deb822 stanzas, else one-line entries.
debian_sources() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && grep -v '^[[:space:]]*#' "$f" && echo
  done
}
sources=$(mktemp)
debian_sources >"$sources" || true
if ! grep -q '^URIs:' "$sources"; then
  grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null >"$sources" || true
fi
if [ ! -s "$sources" ]; then
  say "no Debian package sources found in /etc/apt: cannot make a root" >&2
  exit 1
fi

unmount_all() {
  local m
  for m in dev/shm dev/pts dev proc sys; do
    if mountpoint -q "$root/$m" 2>/dev/null; then umount -l "$root/$m"; fi
  done
}
trap 'unmount_all; rm -f "$sources"' EXIT
unmount_all
# --one-file-system: should a mount have survived, never follow it into the host's /dev or /sys.
rm -rf --one-file-system "$root"

start=$(date +%s)
if [ "${HOKUSAI_FRESH_KEEP_BASE:-0}" != 1 ] || [ ! -f "$base" ]; then
  say "making a minimal Debian 12 root (mmdebstrap --variant=minbase bookworm, + git ca-certificates)"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,git bookworm "$base" - <"$sources"
fi
mkdir -p "$root"
tar -xf "$base" -C "$root"
made=$(date +%s)

mkdir -p "$root/root/hokusai"
git ls-files -z | xargs -0 tar -cf - | tar -xf - -C "$root/root/hokusai"
changed=$(git status --porcelain --untracked-files=no | wc -l)
if [ "$changed" -gt 0 ]; then say "note: $changed tracked file(s) differ from HEAD; copied as they are"; fi

mount --bind /dev "$root/dev"
mount -t devpts devpts "$root/dev/pts" 2>/dev/null || true
mount -t tmpfs -o size=4g tmpfs "$root/dev/shm"
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"

say "running '$cmd' in $root (root made in $((made - start)) s)"
set +e
timeout "${HOKUSAI_FRESH_TIMEOUT:-3600}" chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb CI=true \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  bash -lc "cd /root/hokusai && $cmd" </dev/null
rc=$?
set -e
end=$(date +%s)
if [ $rc -eq 0 ]; then
  say "PASS: '$cmd' in a new Debian 12 root: $((end - made)) s (+ $((made - start)) s to make the root)"
else
  say "FAIL (exit $rc): '$cmd' in a new Debian 12 root after $((end - made)) s; the root stays in $root" >&2
fi
exit $rc
