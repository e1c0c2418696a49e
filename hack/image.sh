#!/usr/bin/env bash
# `make image`: build ./Dockerfile as $IMAGE with Docker where a Docker engine answers, else with
# podman (installed from Debian's packages when missing: podman, buildah, runc, uidmap,
# fuse-overlayfs, debootstrap). The last stdout line is the image reference.
#
# The base (the Dockerfile's BASE_IMAGE build argument):
#   BASE_IMAGE=<ref>      that image (pulled by the engine if it is not local)
#   IMAGE_BASE=upstream   the Dockerfile's default, the public slim Python image
#   IMAGE_BASE=local      hack/base-image.sh: Debian minbase + python3 made from Debian's packages,
#                         imported as localhost/ucloud-base:<codename>-py<ver> and cached
#   IMAGE_BASE=auto       (default) local on a Debian host with podman (no registry needed), else
#                         upstream
#
# Environment:
#   IMAGE=ucloud-operator:dev   the tag
#   ENGINE=docker|podman        force an engine (default: docker if `docker info` works, else podman)
#   IMAGE_BUILD_ARGS="..."      extra build flags, word-split (e.g. --no-cache)
#
# podman runs as root here with the settings this sandbox needs and a normal host accepts too:
# runc, cgroupfs, and ulimits no higher than the host's hard limits (podman's defaults of
# nofile=1048576 and nproc=4194304 are refused by runc where the hard limits are lower). The build
# uses the host network: pip reaches PyPI during it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"

image="${IMAGE:-ucloud-operator:dev}"
log() { echo "image: $*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------- the engine
engine="${ENGINE:-}"
if [[ -z "$engine" ]]; then
  if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
    engine=docker
  else
    engine=podman
  fi
fi

install_podman() {
  local want=(podman buildah runc uidmap fuse-overlayfs) missing=() pkg
  for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null || die "podman is not installed and there is no apt-get: install podman"
  log "apt-get install ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ulimits for the build and for `podman run`: at most the host's hard limits.
podman_ulimits() {
  local nofile nproc
  nofile="$(ulimit -Hn)"; [[ "$nofile" == unlimited || "$nofile" -gt 65536 ]] && nofile=65536
  nproc="$(ulimit -Hu)"; [[ "$nproc" == unlimited || "$nproc" -gt 4096 ]] && nproc=4096
  echo "--ulimit nofile=$nofile:$nofile --ulimit nproc=$nproc:$nproc"
}

# The host's pip settings for the build (podman only: docker build cannot bind-mount): a machine
# behind a TLS-inspecting proxy, or with a PyPI mirror, configures pip with a CA bundle (cert) or
# an index-url; the build's pip gets the same as a pip.conf and the CA file in a folder
# bind-mounted under /dev (the runtime's tmpfs: no mount point is left in any layer) and named by
# the builder stage's PIP_CONFIG_FILE build argument. Nothing of it lands in the image.
pip_setting() {  # NAME: the host pip's value of NAME (env first, then its config files), or nothing
  local name="$1" env_name value
  env_name="PIP_$(tr 'a-z-' 'A-Z_' <<<"$name")"
  value="${!env_name:-}"
  if [[ -z "$value" ]] && command -v python3 >/dev/null; then
    value="$(python3 -m pip config list 2>/dev/null |
      sed -n "s/^\(:env:\|global\|install\)\.$name='\(.*\)'\$/\2/p" | tail -n1)" || true
  fi
  echo "$value"
}
pip_build_config() {
  local dir="$work/pip" cert index extra timeout
  mkdir -p "$dir"
  cert="$(pip_setting cert)"
  [[ -z "$cert" ]] && cert="${REQUESTS_CA_BUNDLE:-}"
  index="$(pip_setting index-url)"
  extra="$(pip_setting extra-index-url)"
  timeout="$(pip_setting default-timeout)"
  {
    echo "[global]"
    [[ -z "$index" ]] || echo "index-url = $index"
    [[ -z "$extra" ]] || echo "extra-index-url = $extra"
    [[ -z "$timeout" ]] || echo "timeout = $timeout"
    if [[ -n "$cert" && -f "$cert" ]]; then
      cp "$cert" "$dir/ca.crt"
      echo "cert = /dev/host-pip/ca.crt"
    fi
  } >"$dir/pip.conf"
  chmod -R a+rX "$dir"
  pip_args=(--volume "$dir:/dev/host-pip:ro" --build-arg PIP_CONFIG_FILE=/dev/host-pip/pip.conf)
  log "the build's pip: $(grep -v '^\[' "$dir/pip.conf" | tr '\n' ' ')"
}
work="$(mktemp -d "${TMPDIR:-/tmp}/ucloud-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT

case "$engine" in
  docker) build=(docker build) ;;
  podman)
    if ! command -v podman >/dev/null || [[ "$(id -u)" == 0 ]]; then install_podman; fi
    read -r -a ulimits <<<"$(podman_ulimits)"
    pip_build_config
    build=(podman --runtime runc --cgroup-manager cgroupfs build --network host "${ulimits[@]}"
      "${pip_args[@]}") ;;
  *) die "ENGINE=$engine: docker or podman" ;;
esac

# ---------------------------------------------------------------- the base
base_args=()
if [[ -n "${BASE_IMAGE:-}" ]]; then
  base_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
  base="$BASE_IMAGE"
else
  mode="${IMAGE_BASE:-auto}"
  if [[ "$mode" == auto ]]; then
    mode=upstream
    # shellcheck source=/dev/null
    if [[ "$engine" == podman ]] && (source /etc/os-release && [[ "${ID:-}" == debian ]]); then mode=local; fi
  fi
  case "$mode" in
    local)
      t0=$SECONDS
      base="$(ENGINE="$engine" hack/base-image.sh | tail -n1)"
      log "base $base ready in $((SECONDS - t0))s"
      base_args=(--build-arg "BASE_IMAGE=$base") ;;
    upstream) base="$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile | head -n1) (the Dockerfile's default)" ;;
    *) die "IMAGE_BASE=$mode: auto, local or upstream" ;;
  esac
fi

# ---------------------------------------------------------------- the build
revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n1)"
extra=()
[[ -n "${IMAGE_BUILD_ARGS:-}" ]] && read -r -a extra <<<"$IMAGE_BUILD_ARGS"
log "$engine build -t $image (base $base)"
t0=$SECONDS
"${build[@]}" -t "$image" -f Dockerfile \
  "${base_args[@]}" --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  "${extra[@]}" . >&2
elapsed=$((SECONDS - t0))

# ---------------------------------------------------------------- what was built
size="$("$engine" image inspect --format '{{.Size}}' "$image")"
user="$("$engine" image inspect --format '{{.Config.User}}' "$image")"
[[ "$user" == 65532:65532 ]] || die "the image's USER is '$user', not 65532:65532"
log "built $image in ${elapsed}s: $((size / 1000000)) MB ($size bytes), USER $user"
echo "$image"
