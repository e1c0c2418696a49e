#!/usr/bin/env bash
# Builds helm-docs (github.com/norwoodj/helm-docs, which writes helm/ucloud-operator/README.md
# from README.md.gotmpl and the `# --` comments of values.yaml) from its Go module into the cache
# of hack/build-control-plane.sh, and prints the path of the binary. Idempotent: a binary already
# in the cache is not rebuilt (a cold build takes about a minute on 2 cores).
#
# A helm-docs of the pinned version in UCLOUD_ASSETS or on PATH is linked in instead of built.
# Used by `make chart-docs` and `make chart-docs-check` (run by `make chart-lint`, so `make test`
# and .ci/run build it on a fresh machine).
set -euo pipefail

# The newest tag the Go module proxy serves (`go list -m -versions github.com/norwoodj/helm-docs`).
HELM_DOCS_VERSION="${HELM_DOCS_VERSION:-1.14.2}"

cache_root="${UCLOUD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ucloud-operator}"
bin="$cache_root/helm-docs-$HELM_DOCS_VERSION/bin"
binary="$bin/helm-docs"

log() { echo "build-helm-docs: $*" >&2; }

reports_version() {  # binary: does `binary --version` name the pinned version?
  local out  # captured first: grep -q closing the pipe early would fail the pipeline
  out="$("$1" --version 2>/dev/null || true)"
  grep -qF -- "version $HELM_DOCS_VERSION" <<<"$out"
}

if [[ ! -x "$binary" ]]; then
  mkdir -p "$bin"
  for found in "${UCLOUD_ASSETS:+$UCLOUD_ASSETS/helm-docs}" "$(command -v helm-docs 2>/dev/null || true)"; do
    if [[ -n "$found" && -x "$found" ]] && reports_version "$found"; then
      ln -sf "$found" "$binary"
      break
    fi
  done
fi

if [[ ! -x "$binary" ]]; then
  command -v go >/dev/null || { log "go is required to build helm-docs v$HELM_DOCS_VERSION"; exit 1; }
  log "building helm-docs v$HELM_DOCS_VERSION"
  # `go install module@version` builds outside any go.mod: no -mod flag applies, and none of the
  # caller's GOFLAGS (e.g. -mod=vendor) may leak in. Built into a temporary folder and moved, so
  # that an interrupted build leaves no half-written binary in the cache.
  tmp="$(mktemp -d "$bin/.build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$tmp" go install -trimpath \
    -ldflags "-s -w -X main.version=$HELM_DOCS_VERSION" \
    "github.com/norwoodj/helm-docs/cmd/helm-docs@v$HELM_DOCS_VERSION"
  mv -f "$tmp/helm-docs" "$binary"
fi

reports_version "$binary" || { log "$binary does not report version $HELM_DOCS_VERSION"; exit 1; }
echo "$binary"
