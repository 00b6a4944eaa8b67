# vigil — see README.md.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/vigil-lb/vigil/pkg/cli.Version=$(VERSION)
BIN       := bin/vigil
E2E_PKGS  := ./...

export CGO_ENABLED ?= 0

.PHONY: all build test test-unit test-e2e lab-binaries vet fmt-check demo bench-failover clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/vigil

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e $(E2E_PKGS)

fmt-check:
	@out=$$(gofmt -l cmd pkg testing); if [ -n "$$out" ]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi

# Unit tests only: no root, no lab.
test-unit:
	$(GO) test -count=1 ./...

# Build (or find in the cache) the lab's kube-apiserver and etcd.
lab-binaries:
	@bash testing/controlplane/build.sh >/dev/null

# Lab tests: real kube-apiserver + etcd, network namespaces. Needs root and
# the tools listed in docs/testing.md. One control plane per test package;
# packages run one at a time (2 cores).
test-e2e: lab-binaries build
	VIGIL_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -p 1 -tags e2e -timeout 40m $(E2E_PKGS)

# Everything: what CI runs.
test: fmt-check vet test-unit test-e2e

clean:
	rm -rf bin

# The main job, for a newcomer: a local real apiserver + netns nodes running
# vigil; a Service gets a VIP; failover shown. Needs root and the lab tools
# (bash .ci/run installs them; or see docs/testing.md).
demo: build lab-binaries
	VIGIL_BIN=$(CURDIR)/$(BIN) $(GO) run ./testing/cmd/vigil-demo

# Failover benchmark in the lab: 10 runs each of create -> first GARP, crash
# failover and graceful handover; writes docs/bench-failover.md.
bench-failover: lab-binaries build
	VIGIL_BIN=$(CURDIR)/$(BIN) VIGIL_BENCH_OUT=$(CURDIR)/docs/bench-failover.md \
		$(GO) test -count=1 -tags e2e -timeout 30m -run TestBenchFailover -v ./testing/e2e/ | grep -v '^\s*$$'
	@cat docs/bench-failover.md
