#!/usr/bin/env bash
# A Python base image made from Debian's packages, for building the Dockerfile where no container
# registry is reachable (the Dockerfile's default base is the public slim Python image).
#
#   hack/base-image.sh     make (or reuse) the base; the last stdout line is its reference
#
# The base is a debootstrap (variant minbase) of this machine's Debian release with python3 and
# python3-venv, brought up to date with the release's updates and security suites, trimmed (no
# apt lists, docs, man pages, locales) and imported into the container engine as
# localhost/ucloud-base:<codename>-py<version>, e.g. localhost/ucloud-base:bookworm-py311. It is
# made once: an image already in the engine is reused as is, and the root filesystem tarball is
# kept in ~/.cache/ucloud-operator/base/ so that an engine whose storage was wiped only re-imports.
# The Debian mirror is the one this machine's apt uses (its deb822 or one-line sources).
#
# Environment:
#   ENGINE=podman          the container engine (podman or docker) the image goes into
#   BASE_REBUILD=1         debootstrap again even if the tarball and the image exist
#   DEBIAN_MIRROR=<url>    the mirror for debootstrap (default: from /etc/apt/sources*)
#   UCLOUD_CACHE           cache root (default ~/.cache/ucloud-operator)
set -euo pipefail

engine="${ENGINE:-podman}"
cache_root="${UCLOUD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ucloud-operator}"
log() { echo "base-image: $*" >&2; }
die() { log "$*"; exit 1; }

# shellcheck source=/dev/null
source /etc/os-release
[[ "${ID:-}" == debian && -n "${VERSION_CODENAME:-}" ]] ||
  die "needs a Debian host (found ${PRETTY_NAME:-unknown}); build with BASE_IMAGE=<a Python 3.11+ image> instead"
codename="$VERSION_CODENAME"
# The release's python3 (the tag names it before anything is built, so that the cache is checked
# first); a release whose python3 is older than the project's 3.11 is refused.
case "$codename" in
  bookworm) py=3.11 ;;
  trixie) py=3.13 ;;
  *) die "Debian $codename: its python3 version is not known here (the project needs >= 3.11)" ;;
esac
ref="localhost/ucloud-base:${codename}-py${py//./}"
image_exists() {
  local label
  label="$("$engine" image inspect --format '{{index .Config.Labels "dev.ucloud.base.recipe"}}' "$ref" 2>/dev/null)" || return 1
  [[ "$label" == "$recipe" ]] || { log "$ref was made by another recipe ($label, now $recipe)"; return 1; }
}

# The mirror of the release itself, and the URIs of its other suites (updates, security), read
# from this machine's apt sources, so that the base gets what the host gets.
apt_sources() {  # prints "URI SUITE" pairs of the Debian sources
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
      { uris = ""; suites = ""; types = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
          if ($i ~ /^Suites:/) { suites = $i; sub(/^Suites:[ \t]*/, "", suites) }
          if ($i ~ /^Types:/) { types = $i }
          if ($i ~ /^Enabled:[ \t]*no/) { enabled = "no" }
        }
        if (enabled == "yes" && types ~ /(^|[ \t])deb([ \t]|$)/) {
          n = split(uris, u, /[ \t]+/); m = split(suites, s, /[ \t]+/)
          for (a = 1; a <= n; a++) for (b = 1; b <= m; b++) print u[a], s[b]
        } }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } print $i, $(i + 1) }' "$f"
  done
}
mapfile -t sources < <(apt_sources | awk -v c="$codename" '$2 == c || $2 == c "-updates" || $2 == c "-security"' | sort -u)
mirror="${DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  mirror="$(printf '%s\n' "${sources[@]}" | awk -v c="$codename" '$2 == c { print $1; exit }')"
fi

install_tools() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || missing+=(debian-archive-keyring)
  ((${#missing[@]} == 0)) && return 0
  log "apt-get install ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

make_tarball() {
  [[ -n "$mirror" ]] || die "no apt source for Debian $codename found; set DEBIAN_MIRROR"
  install_tools
  local rootfs t0=$SECONDS
  mkdir -p "$(dirname "$tarball")"
  rootfs="$(mktemp -d "$(dirname "$tarball")/rootfs.XXXXXX")"
  # shellcheck disable=SC2064  # expand now: the trap must remove this rootfs
  trap "umount -R '$rootfs/proc' 2>/dev/null || true; rm -rf '$rootfs'" EXIT
  log "debootstrap --variant=minbase $codename (python3, python3-venv) from the host's Debian mirror"
  debootstrap --variant=minbase --include=python3,python3-venv \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$codename" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 ||
    { tail -n 30 "$rootfs.log" >&2; die "debootstrap failed (log: $rootfs.log)"; }
  # The release's updates and security suites, as on the host.
  local line uri suite
  : >"$rootfs/etc/apt/sources.list"
  for line in "${sources[@]}"; do
    read -r uri suite <<<"$line"
    echo "deb $uri $suite main" >>"$rootfs/etc/apt/sources.list"
  done
  log "apt-get upgrade inside the root filesystem ($(wc -l <"$rootfs/etc/apt/sources.list") suites)"
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get upgrade -y -qq && apt-get clean' >>"$rootfs.log" 2>&1 ||
    { tail -n 30 "$rootfs.log" >&2; die "apt-get upgrade in the rootfs failed (log: $rootfs.log)"; }
  "$rootfs/usr/bin/python3" -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11), sys.version' ||
    die "the rootfs python3 is not usable"
  # Trim what a runtime never reads; keep dpkg's status so scanners can list the packages.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/var/log/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/lintian "$rootfs"/tmp/* "$rootfs"/root/.cache \
    "$rootfs"/debootstrap
  # Keep the standard library's bytecode (Debian compiles it when python3 is configured): the
  # operator runs on a read-only root filesystem, where Python cannot write the .pyc it lacks and
  # would compile every module it imports again at each start.
  local pyc
  pyc="$(find "$rootfs/usr/lib/python$py" -name '*.pyc' | wc -l)"
  ((pyc > 100)) || die "only $pyc .pyc files in the rootfs's standard library"
  # The engine makes /dev, /proc and /sys itself.
  rm -rf "${rootfs:?}"/dev/* "$rootfs"/proc/* "$rootfs"/sys/*
  tar --numeric-owner --xattrs -C "$rootfs" -cf "$tarball.tmp" .
  rm -f "$(dirname "$tarball")"/ucloud-base-"${codename}"-py"${py//./}"*.tar
  mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs" "$rootfs.log"
  trap - EXIT
  log "root filesystem $tarball ($(du -h "$tarball" | cut -f1)) in $((SECONDS - t0))s"
}

# The recipe: the code that makes the root filesystem and the settings of the import. A changed
# recipe makes a new base; the tarball and the image are named and labelled with it.
changes=(
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  --change 'ENV LANG=C.UTF-8'
  --change 'CMD ["python3"]'
  --change 'LABEL org.opencontainers.image.title=ucloud-base'
  --change "LABEL org.opencontainers.image.description=Debian-$codename-minbase-python3"
)
recipe="$({ declare -f make_tarball install_tools; echo "$codename $py"; printf '%s\n' "${changes[@]}"; } |
  sha256sum | cut -c1-12)"
changes+=(--change "LABEL dev.ucloud.base.recipe=$recipe")
tarball="$cache_root/base/ucloud-base-${codename}-py${py//./}-$recipe.tar"

if [[ "${BASE_REBUILD:-0}" != 1 ]] && image_exists; then
  log "$ref exists (reused; BASE_REBUILD=1 makes it again)"
  echo "$ref"
  exit 0
fi

if [[ "${BASE_REBUILD:-0}" == 1 || ! -f "$tarball" ]]; then
  make_tarball
else
  log "reusing $tarball"
fi

log "$engine import $ref"
quiet=()
[[ "$engine" == podman ]] && quiet=(--quiet)
"$engine" import "${quiet[@]}" "${changes[@]}" "$tarball" "$ref" >/dev/null
echo "$ref"
