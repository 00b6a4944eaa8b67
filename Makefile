# vigil — see README.md.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/vigil-lb/vigil/pkg/cli.Version=$(VERSION)
BIN       := bin/vigil
E2E_PKGS  := ./...

export CGO_ENABLED ?= 0

.PHONY: all build test test-unit test-e2e test-e2e-long lab-binaries helm image vet fmt-check demo bench-failover bench-rebalance bench-bgp bench-scale bench-crash-small bench-election-sim chaos clean

all: build

# bin/vigil (the agent and every other command) and bin/vigil-bgp (the same
# with GoBGP linked in; vigil manager execs into it with bgp_enable).
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/vigil ./cmd/vigil-bgp

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e $(E2E_PKGS)

fmt-check:
	@out=$$(gofmt -l cmd pkg testing); if [ -n "$$out" ]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi

# Build (or find in the cache) the helm binary the chart tests run; helm
# stays out of vigil's go.mod (testing/helm/build.sh).
helm:
	@bash testing/helm/build.sh >/dev/null

# Unit tests only (with the race detector, which needs cgo): no root, no lab.
# The chart tests run the cached helm (VIGIL_HELM set: they never skip here).
test-unit: helm
	VIGIL_HELM=$$(bash testing/helm/build.sh --path) CGO_ENABLED=1 $(GO) test -race -count=1 ./...

# The container image for linux/amd64 and linux/arm64 without a Docker
# daemon: buildah (vfs) around binaries the host's Go cross-compiles. Needs
# root, buildah and qemu-user-static (testing/install-deps.sh). Writes
# bin/image/linux-<arch>/rootfs and bin/image/vigil.tar (multi-arch OCI archive).
image:
	VERSION=$(VERSION) bash testing/image/build.sh

# Build (or find in the cache) the lab's kube-apiserver and etcd.
lab-binaries:
	@bash testing/controlplane/build.sh >/dev/null

# Lab tests: real kube-apiserver + etcd, network namespaces. Needs root and
# the tools listed in docs/testing.md. One control plane per test package;
# packages run one at a time (2 cores). Then the election lab tests again
# with every agent in node-heartbeat mode (about 80 s; the whole lab runs in
# that mode with VIGIL_E2E_AGENT_ENV=vigil_election_mode=node).
NODE_MODE_TESTS := ^(TestSharedAddress|TestLocalTrafficPolicy|TestFailover|TestPartitionedHolderWithdrawsFirst|TestRestartRemovesStaleVIP|TestStalledOrKilledHolderLapses|TestRestartedAgentTakesBackItsService|TestLeaseOfDeletedServiceCleanedUp|TestCutFromAPIAndLANTakenOver|TestSteadyClusterIsQuiet)$$
test-e2e: lab-binaries build image
	VIGIL_BIN=$(CURDIR)/$(BIN) VIGIL_IMAGE_ROOTFS=$(CURDIR)/bin/image VIGIL_HELM=$$(bash testing/helm/build.sh --path) $(GO) test -count=1 -p 1 -tags e2e -timeout 40m $(E2E_PKGS)
	VIGIL_BIN=$(CURDIR)/$(BIN) VIGIL_E2E_AGENT_ENV=vigil_election_mode=node $(GO) test -count=1 -tags e2e -timeout 10m -run '$(NODE_MODE_TESTS)' ./testing/e2e/

# Everything: what CI runs.
test: fmt-check vet test-unit test-e2e

clean:
	rm -rf bin

# The main job, for a newcomer: a local real apiserver + netns nodes running
# vigil; a Service gets a VIP; failover shown. Needs root and the lab tools
# (bash .ci/run installs them; or see docs/testing.md).
demo: build lab-binaries
	VIGIL_BIN=$(CURDIR)/$(BIN) $(GO) run ./testing/cmd/vigil-demo

# The 5-minute API server outage with LAN liveness (issue 13; not in make
# test): every VIP keeps answering from its node throughout.
test-e2e-long: lab-binaries build
	VIGIL_BIN=$(CURDIR)/$(BIN) VIGIL_E2E_LONG=1 $(GO) test -count=1 -tags e2e -timeout 20m -run 'TestAPIServerAwayFiveMinutes' -v ./testing/e2e/

# Failover benchmark in the lab: 10 runs each of create -> first GARP, crash
# failover and graceful handover; writes docs/bench-failover.md.
bench-failover: lab-binaries build
	VIGIL_BIN=$(CURDIR)/$(BIN) VIGIL_BENCH_OUT=$(CURDIR)/docs/bench-failover.md \
		$(GO) test -count=1 -tags e2e -timeout 30m -run TestBenchFailover -v ./testing/e2e/
	@cat docs/bench-failover.md

# Rebalancing benchmark in the lab (issue 11): 5 rolling restarts per
# election mode (VIGIL_BENCH_RUNS=n to change) with opt-in rebalancing, how
# long each graceful handover leaves its VIP bound nowhere; writes
# docs/bench-rebalance.md only when every run passed.
bench-rebalance: lab-binaries build
	rm -f docs/bench-rebalance.md.new
	VIGIL_BIN=$(CURDIR)/$(BIN) VIGIL_BENCH_OUT=$(CURDIR)/docs/bench-rebalance.md.new \
		$(GO) test -count=1 -tags e2e -timeout 30m -run TestBenchRebalance -v ./testing/e2e/
	mv docs/bench-rebalance.md.new docs/bench-rebalance.md
	@cat docs/bench-rebalance.md

# BGP benchmark in the lab (issue 9): 10 runs each (VIGIL_BENCH_RUNS=n to
# change) of create -> ECMP route, SIGTERM, Local endpoint move, crash by hold
# timer and by BFD, and 3 of 1,000 VIPs with agent RSS; writes
# docs/bench-bgp.md (only when every run passed: no table from a partial run).
bench-bgp: lab-binaries build
	rm -f docs/bench-bgp.md.new
	VIGIL_BIN=$(CURDIR)/$(BIN) VIGIL_BENCH_OUT=$(CURDIR)/docs/bench-bgp.md.new \
		$(GO) test -count=1 -tags e2e -timeout 30m -run TestBenchBGP -v ./testing/e2e/
	mv docs/bench-bgp.md.new docs/bench-bgp.md
	@cat docs/bench-bgp.md

# Scale benchmark in the lab (issue 11): 50, 200 and 1,000 Services on 3
# nodes and 200 on 10 (VIGIL_BENCH_SCALE=3x50,10x200 to change); agent
# settings from VIGIL_BENCH_ENV (e.g. "vigil_election_mode=node"); writes
# SCALE_OUT (docs/bench-scale.md) only when every row ran, e.g.
# make bench-scale VIGIL_BENCH_ENV=vigil_election_mode=node SCALE_OUT=docs/bench-scale-node.md
SCALE_OUT ?= docs/bench-scale.md
bench-scale: lab-binaries build
	rm -f $(SCALE_OUT).new
	VIGIL_BIN=$(CURDIR)/$(BIN) VIGIL_BENCH_OUT=$(abspath $(SCALE_OUT)).new \
		$(GO) test -count=1 -tags e2e -timeout 60m -run 'TestBenchScale$$' -v ./testing/e2e/ | grep -v '^\s*$$'
	mv $(SCALE_OUT).new $(SCALE_OUT)
	@cat $(SCALE_OUT)

# Crash of a node holding 10 Services among ~1,000 (issue 11): three
# agents hold 800, a fourth is given 10 and crashed, VIGIL_BENCH_RUNS times
# (default 3); agent settings from VIGIL_BENCH_ENV; writes CRASH_OUT, e.g.
# make bench-crash-small VIGIL_BENCH_ENV=vigil_election_mode=node CRASH_OUT=docs/bench-crash-small-node.md
CRASH_OUT ?= docs/bench-crash-small.md
bench-crash-small: lab-binaries build
	rm -f $(CRASH_OUT).new
	VIGIL_BIN=$(CURDIR)/$(BIN) VIGIL_BENCH_OUT=$(abspath $(CRASH_OUT)).new \
		$(GO) test -count=1 -tags e2e -timeout 30m -run 'TestBenchCrashSmallHolder$$' -v ./testing/e2e/ | grep -v '^\s*$$'
	mv $(CRASH_OUT).new $(CRASH_OUT)
	@cat $(CRASH_OUT)

# Election cost model (issue 11): 100 electors x 10,000 Services in one
# process against the lab's real API server (VIGIL_SIM_NODES,
# VIGIL_SIM_SERVICES, VIGIL_SIM_MODES=node,service, VIGIL_SIM_WINDOW);
# writes docs/bench-election-sim.md. Needs several GiB of memory at the
# default size (every elector has its own Lease cache, as an agent has).
bench-election-sim: lab-binaries
	rm -f docs/bench-election-sim.md.new
	VIGIL_SIM_OUT=$(CURDIR)/docs/bench-election-sim.md.new \
		$(GO) test -count=1 -tags e2e -timeout 60m -run 'TestElectionSim$$' -v ./testing/e2e/ | grep -v '^\s*$$'
	mv docs/bench-election-sim.md.new docs/bench-election-sim.md
	@cat docs/bench-election-sim.md

# Fault campaign (issue 14): a seeded random schedule of faults against a lab
# of ~50 Services while an independent checker watches ARP/NDP, netlink and
# the API; any violation fails it. Writes docs/chaos.md (also on failure:
# the report names the violations). MODE_ENV is extra agent settings, e.g.
# MODE_ENV='vigil_election_mode=node'; REPORT is where the report goes (runs
# in other modes keep theirs beside docs/chaos.md). make test runs a
# 3-minute one.
DURATION   ?= 30m
SEED       ?= $(shell date +%s)
NODES      ?= 5
API_OUTAGE ?= 5m
MODE_ENV   ?=
REPORT     ?= docs/chaos.md
chaos: lab-binaries build
	VIGIL_BIN=$(CURDIR)/$(BIN) VIGIL_CHAOS_DURATION=$(DURATION) VIGIL_CHAOS_SEED=$(SEED) \
		VIGIL_CHAOS_NODES=$(NODES) VIGIL_CHAOS_API_OUTAGE=$(API_OUTAGE) VIGIL_CHAOS_ENV='$(MODE_ENV)' \
		VIGIL_CHAOS_REPORT=$(abspath $(REPORT)) \
		$(GO) test -count=1 -tags e2e -timeout 2h -run '^TestChaos$$' -v ./testing/e2e/
	@cat $(REPORT)
