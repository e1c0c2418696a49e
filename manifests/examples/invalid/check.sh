#!/usr/bin/env bash
# Check that the API server refuses every invalid UCloudJob in this directory with the
# expected message.
#
#   KUBECONFIG=... [KUBECTL=kubectl] ./check.sh NAMESPACE
#
# Every *.yaml here starts with a line `# expect: <substring>`: the API server's error must
# contain that substring (a fixed string, not a pattern).
#
# - A single-document file is sent with `kubectl apply --dry-run=server`; it must be refused.
# - A file with the header line `# update: true` holds two documents: the valid original,
#   which is created for real, and the invalid update of the same object, which is sent with
#   `kubectl apply --dry-run=server` and must be refused. The original is deleted afterwards.
#
# Prints `PASS <file>` or `FAIL <file>: <output>` per file; exits non-zero on any failure.
# The CRD (manifests/crd.yaml) must be installed and NAMESPACE must exist.
set -euo pipefail

KUBECTL=${KUBECTL:-kubectl}
if [[ $# -ne 1 || -z $1 ]]; then
  echo "usage: KUBECONFIG=... [KUBECTL=kubectl] $0 NAMESPACE" >&2
  exit 2
fi
ns=$1
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if ! out=$("$KUBECTL" get namespace "$ns" -o name 2>&1); then
  echo "check.sh: namespace $ns is not usable: $out" >&2
  exit 2
fi
if ! out=$("$KUBECTL" get crd ucloudjobs.ucloud.dk -o name 2>&1); then
  echo "check.sh: the UCloudJob CRD is not installed: $out" >&2
  exit 2
fi

tmp=$(mktemp -d)
created=""   # the original of an update check, while it exists
cleanup() {
  if [[ -n $created ]]; then
    "$KUBECTL" delete -n "$ns" -f "$created" --ignore-not-found --wait >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# split FILE: write its YAML documents to $tmp/doc-1.yaml, $tmp/doc-2.yaml, ...; print the count.
split_docs() {
  rm -f "$tmp"/doc-*.yaml
  awk -v out="$tmp/doc-" '
    BEGIN { n = 1 }
    /^---[[:space:]]*$/ { n++; next }
    { print > (out n ".yaml") }
  ' "$1"
  local count=0 f
  for f in "$tmp"/doc-*.yaml; do
    [[ -e $f ]] || continue
    # a document of comments and blank lines only does not count
    if grep -qvE '^[[:space:]]*(#.*)?$' "$f"; then count=$((count + 1)); fi
  done
  echo "$count"
}

failures=0
total=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; failures=$((failures + 1)); }

shopt -s nullglob
files=("$dir"/*.yaml)
if [[ ${#files[@]} -eq 0 ]]; then
  echo "check.sh: no *.yaml files in $dir" >&2
  exit 2
fi

for path in "${files[@]}"; do
  file=$(basename "$path")
  total=$((total + 1))

  first=$(head -n 1 "$path")
  if [[ ! $first =~ ^#\ expect:\ (.+)$ ]]; then
    fail "$file" "first line is not '# expect: <substring>'"
    continue
  fi
  expect=${BASH_REMATCH[1]}
  expect=${expect%"${expect##*[![:space:]]}"}   # trim trailing whitespace

  # `# update: true` among the leading comment lines
  update=false
  while IFS= read -r line; do
    [[ $line == \#* || -z $line ]] || break
    if [[ $line =~ ^#\ update:\ true[[:space:]]*$ ]]; then update=true; fi
  done < "$path"

  ndocs=$(split_docs "$path")
  if [[ $update == true ]]; then
    if [[ $ndocs -ne 2 ]]; then
      fail "$file" "an update file must hold exactly 2 documents, found $ndocs"
      continue
    fi
    orig="$tmp/original.yaml"
    cp "$tmp/doc-1.yaml" "$orig"
    cp "$tmp/doc-2.yaml" "$tmp/update.yaml"
    # start from a clean slate, then create the original for real
    "$KUBECTL" delete -n "$ns" -f "$orig" --ignore-not-found --wait >/dev/null 2>&1 || true
    created=$orig
    if ! out=$("$KUBECTL" apply -n "$ns" -f "$orig" 2>&1); then
      fail "$file" "the original (first document) was refused: $out"
      "$KUBECTL" delete -n "$ns" -f "$orig" --ignore-not-found --wait >/dev/null 2>&1 || true
      created=""
      continue
    fi
    rc=0
    out=$("$KUBECTL" apply --dry-run=server -n "$ns" -f "$tmp/update.yaml" 2>&1) || rc=$?
    if ! del=$("$KUBECTL" delete -n "$ns" -f "$orig" --ignore-not-found --wait 2>&1); then
      echo "check.sh: warning: could not delete the original of $file: $del" >&2
    fi
    created=""
  else
    if [[ $ndocs -ne 1 ]]; then
      fail "$file" "expected exactly 1 document (or a '# update: true' header), found $ndocs"
      continue
    fi
    rc=0
    out=$("$KUBECTL" apply --dry-run=server -n "$ns" -f "$path" 2>&1) || rc=$?
  fi

  if [[ $rc -eq 0 ]]; then
    fail "$file" "accepted, expected a refusal containing '$expect': $out"
  elif [[ $out != *"$expect"* ]]; then
    fail "$file" "refused, but the message does not contain '$expect': $out"
  else
    pass "$file"
  fi
done

echo "$((total - failures))/$total passed"
[[ $failures -eq 0 ]]
