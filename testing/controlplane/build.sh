#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the Go module proxy into a cache
# directory keyed by version, so only the first run pays for the build.
#
#   testing/controlplane/build.sh            # prints the cache dir on success
#
# Environment:
#   KUBE_VERSION   k8s.io/kubernetes version (default v1.37.2, the minor of
#                  the client-go vigil uses)
#   ETCD_VERSION   go.etcd.io/etcd/server/v3 version (default v3.7.3)
#   VIGIL_LAB_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/vigil/lab)
#
# Each binary is written under a temporary name and renamed into place, so an
# interrupted build is never mistaken for a finished one.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
CACHE_ROOT=${VIGIL_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil/lab}
OUT="$CACHE_ROOT/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"
mkdir -p "$OUT"

log() { printf '[controlplane] %s\n' "$*" >&2; }

export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off

build_etcd() {
	if [[ -x "$OUT/etcd" ]]; then return; fi
	local mod="$CACHE_ROOT/build/etcd-$ETCD_VERSION"
	mkdir -p "$mod"
	log "building etcd $ETCD_VERSION (about 1 min cold) ..."
	(
		cd "$mod"
		[[ -f go.mod ]] || go mod init vigil.lab/etcdbuild >/dev/null 2>&1
		go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1
		go build -trimpath -o "$OUT/etcd.tmp.$$" go.etcd.io/etcd/server/v3
	)
	mv "$OUT/etcd.tmp.$$" "$OUT/etcd"
	log "etcd ready"
}

build_apiserver() {
	if [[ -x "$OUT/kube-apiserver" ]]; then return; fi
	local mod="$CACHE_ROOT/build/kubernetes-$KUBE_VERSION"
	mkdir -p "$mod"
	log "building kube-apiserver $KUBE_VERSION (6-12 min cold on 2 cores; cached afterwards) ..."
	local staging="v0.${KUBE_VERSION#v1.}"
	(
		cd "$mod"
		if [[ ! -f go.mod ]]; then
			# kubernetes' own go.mod lists its staging repos at v0.0.0 with
			# replace directives to ./staging; mirror them at the release tag.
			local gomod
			gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
			local mods
			mods=$(awk '/^[[:space:]]*k8s\.io\/[^ ]+ v0\.0\.0$/ {print $1}' "$gomod" | sort -u)
			{
				echo "module vigil.lab/kubebuild"
				echo
				echo "go 1.25"
				echo
				echo "require k8s.io/kubernetes $KUBE_VERSION"
				echo
				for m in $mods; do echo "require $m $staging"; done
				echo
				for m in $mods; do echo "replace $m => $m $staging"; done
			} >go.mod.tmp
			mv go.mod.tmp go.mod
			cat >tools.go <<'EOF'
//go:build tools

package kubebuild

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
			go mod tidy >/dev/null 2>&1 || go mod download >/dev/null
		fi
		local pkg=k8s.io/component-base/version
		local minor=${KUBE_VERSION#v1.}
		minor=${minor%%.*}
		go build -trimpath \
			-ldflags "-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
			-o "$OUT/kube-apiserver.tmp.$$" k8s.io/kubernetes/cmd/kube-apiserver
	)
	mv "$OUT/kube-apiserver.tmp.$$" "$OUT/kube-apiserver"
	log "kube-apiserver ready"
}

# kubectl only when the machine has none (the lab tests drive kubectl).
build_kubectl() {
	if [[ -x "$OUT/kubectl" ]] || command -v kubectl >/dev/null; then return; fi
	log "no kubectl on PATH: building kubectl $KUBE_VERSION ..."
	local pkg=k8s.io/component-base/version minor=${KUBE_VERSION#v1.}
	minor=${minor%%.*}
	(
		cd "$CACHE_ROOT/build/kubernetes-$KUBE_VERSION"
		go build -trimpath \
			-ldflags "-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
			-o "$OUT/kubectl.tmp.$$" k8s.io/kubernetes/cmd/kubectl
	)
	mv "$OUT/kubectl.tmp.$$" "$OUT/kubectl"
	log "kubectl ready in $OUT (the lab puts it on PATH)"
}

build_etcd
build_apiserver
build_kubectl
echo "$OUT"
