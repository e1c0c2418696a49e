#!/usr/bin/env bash
# Builds what the real node needs beside the control plane's kubelet and kube-proxy, into the same
# cache outside the repo, and prints the folder that holds it (bin/, cni/, images/). Idempotent.
#
#   containerd, containerd-shim-runc-v2, ctr   Go module github.com/containerd/containerd/v2: the
#       kubelet of 1.37 drops containerd 1.x (1.36 already counts it as losing support), so the
#       node runs 2.x, built here, rather than Debian's 1.6
#   bridge, host-local, loopback, portmap      Go module github.com/containernetworking/plugins
#   coredns                                    Go module github.com/coredns/coredns
#   runc, iptables, conntrack, busybox-static  Debian's packages (apt-get, when missing)
#   images/pause.tar, images/busybox.tar       docker archives made here (hack/node/image_archive.py):
#       the pause container (hack/node/pause) and a test image of Debian's static busybox
#
# Binaries already at UCLOUD_NODE_ASSETS (or on PATH) that report the pinned version are linked in.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$here/versions.env"
cache_root="${UCLOUD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ucloud-operator}"
out="$cache_root/node_containerd-${CONTAINERD_VERSION}_cni-${CNI_PLUGINS_VERSION}_coredns-${COREDNS_VERSION}"
mkdir -p "$out/bin" "$out/cni" "$out/images"
log() { echo "build-node: $*" >&2; }

packages=(runc iptables conntrack busybox-static)
missing_packages=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing_packages+=("$pkg")
done
if ((${#missing_packages[@]})); then
  log "apt-get install ${missing_packages[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_packages[@]}" >/dev/null
fi

take_existing() {  # name version
  local found
  [[ -x "$out/bin/$1" ]] && return 0
  for found in "${UCLOUD_NODE_ASSETS:+$UCLOUD_NODE_ASSETS/$1}" "$(command -v "$1" 2>/dev/null || true)"; do
    if [[ -n "$found" && -x "$found" && "$("$found" --version 2>/dev/null || true)" == *"$2"* ]]; then
      ln -sf "$found" "$out/bin/$1"
      return 0
    fi
  done
  return 1
}

export GOFLAGS="${GOFLAGS:--buildvcs=false}"
if ! take_existing containerd "v$CONTAINERD_VERSION" || [[ ! -x "$out/bin/containerd-shim-runc-v2" || ! -x "$out/bin/ctr" ]]; then
  log "building containerd v$CONTAINERD_VERSION"
  pkg=github.com/containerd/containerd/v2
  # The version is stamped as containerd's release builds do; no btrfs/devmapper/zfs snapshotters
  # (their C headers are not installed, and the node uses overlayfs).
  CGO_ENABLED=0 GOBIN="$out/bin" go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X $pkg/version.Version=v$CONTAINERD_VERSION" \
    "$pkg/cmd/containerd@v$CONTAINERD_VERSION" "$pkg/cmd/containerd-shim-runc-v2@v$CONTAINERD_VERSION" \
    "$pkg/cmd/ctr@v$CONTAINERD_VERSION"
fi

cni=(bridge host-local loopback portmap)
for plugin in "${cni[@]}"; do
  [[ -x "$out/cni/$plugin" ]] && continue
  log "building CNI plugins v$CNI_PLUGINS_VERSION"
  pkg=github.com/containernetworking/plugins
  CGO_ENABLED=0 GOBIN="$out/cni" go install -trimpath -ldflags "-s -w" \
    "$pkg/plugins/main/bridge@v$CNI_PLUGINS_VERSION" "$pkg/plugins/ipam/host-local@v$CNI_PLUGINS_VERSION" \
    "$pkg/plugins/main/loopback@v$CNI_PLUGINS_VERSION" "$pkg/plugins/meta/portmap@v$CNI_PLUGINS_VERSION"
  break
done

if ! take_existing coredns "$COREDNS_VERSION"; then
  log "building CoreDNS v$COREDNS_VERSION"
  CGO_ENABLED=0 GOBIN="$out/bin" go install -trimpath -ldflags "-s -w" \
    "github.com/coredns/coredns@v$COREDNS_VERSION"
fi

# The images. A new recipe (these files) makes them again.
recipe="$(cat "$here/node/pause/main.go" "$here/node/image_archive.py" "$(command -v busybox)" | sha256sum | cut -c1-12)"
if [[ "$(cat "$out/images/recipe" 2>/dev/null)" != "$recipe" ]]; then
  log "making the pause and busybox images"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/pause" "$work/busybox/bin" "$work/busybox/tmp" "$work/busybox/etc"
  (cd "$here/node/pause" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/pause/pause" .)
  python3 "$here/node/image_archive.py" "$work/pause" "$PAUSE_IMAGE" "$out/images/pause.tar" \
    --entrypoint '["/pause"]' --user 65535:65535
  cp "$(command -v busybox)" "$work/busybox/bin/busybox"
  for applet in $("$work/busybox/bin/busybox" --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$work/busybox/bin/$applet"
  done
  chmod 1777 "$work/busybox/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$work/busybox/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$work/busybox/etc/group"
  python3 "$here/node/image_archive.py" "$work/busybox" "$TEST_IMAGE" "$out/images/busybox.tar"
  echo "$recipe" >"$out/images/recipe"
fi

echo "$out"
