#!/usr/bin/env bash
# Builds the helm binary from the Go module proxy into a cache directory
# keyed by version, so only the first run pays for the build. helm stays out
# of vigil's own go.mod: it would pull its whole dependency graph into the
# agent's module.
#
#   testing/helm/build.sh          # prints the path of the helm binary
#   testing/helm/build.sh --path   # prints where it is (or would be); builds nothing
#
# Environment:
#   HELM_VERSION      helm.sh/helm/v3 version (default v3.22.0)
#   VIGIL_HELM_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/vigil/helm)
#
# The binary is written under a temporary name and renamed into place, so an
# interrupted build is never mistaken for a finished one.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v3.22.0}
CACHE_ROOT=${VIGIL_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil/helm}
OUT="$CACHE_ROOT/helm-$HELM_VERSION"
BIN="$OUT/helm"

if [[ ${1:-} == --path || -x "$BIN" ]]; then
	echo "$BIN"
	exit 0
fi

export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off
mod="$CACHE_ROOT/build/helm-$HELM_VERSION"
mkdir -p "$mod" "$OUT"
printf '[helm] building helm %s (about 2-4 min cold on 2 cores; cached afterwards) ...\n' "$HELM_VERSION" >&2
(
	cd "$mod"
	[[ -f go.mod ]] || go mod init vigil.test/helmbuild >/dev/null 2>&1
	go get "helm.sh/helm/v3@$HELM_VERSION" >/dev/null 2>&1
	go build -trimpath \
		-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
		-o "$BIN.tmp.$$" helm.sh/helm/v3/cmd/helm
)
mv "$BIN.tmp.$$" "$BIN"
printf '[helm] helm ready\n' >&2
echo "$BIN"
