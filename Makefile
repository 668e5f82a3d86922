# The README's two commands are `make run` and `make test`.
GO        ?= go
# Inputs per fuzz target in make test: a count, not a duration. A duration
# (-fuzztime 5s) now and then fails a target with "context deadline exceeded"
# and no crasher: a race in Go's fuzz coordinator at the deadline (Go
# 1.26; golang/go#75804). make fuzz FUZZTIME=10m for longer runs.
FUZZTIME  ?= 20000x
DATA      ?= devnet

.PHONY: all build test test-reliability sim test-sim vet unit fuzz-short fuzz bench bench-scenarios bench-catchup bench-scale crash run primary demo proto proto-check clean rules

all: build

build:
	$(GO) build ./...
	$(GO) build -o bin/ ./cmd/...

# make test: vet, the whole suite under the race detector, then each fuzz
# target for a few seconds.
test: vet unit fuzz-short

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -timeout 20m ./...

fuzz-short:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./block/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeProof$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./block/
	$(GO) test -run '^$$' -fuzz '^FuzzApplyBlock$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./store/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeSMTProof$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./merkle/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMMRProof$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./merkle/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeNodeRecord$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./merkle/
	$(GO) test -run '^$$' -fuzz '^FuzzBlockReads$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./api/
	$(GO) test -run '^$$' -fuzz '^FuzzIDReads$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./api/
	$(GO) test -run '^$$' -fuzz '^FuzzSyncNotes$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./api/
	$(GO) test -run '^$$' -fuzz '^FuzzRequestBytes$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./api/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeReport$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./replicas/

# The fault-injection suite in its long form (100+ crashes, 30 s black
# holes, ...): figures for RELIABILITY.md. `make test` runs it short.
test-reliability:
	STORESYNC_RELIABILITY=full $(GO) test -race -count=1 -timeout 60m -v ./reliability/

# The simulator: the engine's decision cores over a grid of simulated
# deployments (a table), and its property tests over 20 seeds.
sim:
	$(GO) run ./cmd/storesim --seeds 3

test-sim:
	STORESYNC_SIM=full $(GO) test -count=1 -timeout 30m ./sim/

# Longer fuzzing, by hand: make fuzz FUZZTIME=5m
fuzz: fuzz-short

# The shipped Prometheus rules: syntax, then their promtool unit tests
# (make test also runs them, and against a real Prometheus: ./deploy/).
rules:
	promtool check rules deploy/prometheus/storesync-rules.yml
	promtool test rules deploy/prometheus/storesync-rules_test.yml

# The apply benchmark with its per-stage breakdown and limits.
bench:
	$(GO) test -run '^$$' -bench ApplyBlock -benchtime 3s ./store/
	$(GO) test -run '^$$' -bench ReadAPI -benchtime 3s ./api/

# The side-by-side scenarios (engine vs naive loop vs apply-only limit):
# make bench-scenarios [QUICK=--quick]; results in Markdown on stdout.
bench-scenarios:
	$(GO) run ./bench all $(QUICK) --json bench-results.json

# A fresh follower catching up 2,000 standard blocks from a primary on
# loopback, next to the apply-only limit (about two minutes).
bench-catchup:
	$(GO) test -run '^$$' -bench CatchUp -benchtime 1x -timeout 30m ./runtime/

# How the store's costs grow with its state: apply by stage, open, memory,
# reads and disk per key at 10^5, 10^6 and 10^7 keys (SIZES=1e5,1e6 for
# less), and open and reads on chains of 10^3 and 10^5 small blocks
# (BLOCKS). States are built once and kept in ~/.cache/storesync/scale
# (about 10 GB in all; the run prints its disk use). Building them the
# first time takes about an hour.
SIZES  ?= 1e5,1e6,1e7
BLOCKS ?= 1e3,1e5
bench-scale:
	$(GO) run ./bench scale --scale-sizes $(SIZES) --scale-blocks $(BLOCKS) --plots bench-plots

# The crash test alone, with another seed: make crash SEED=7
crash:
	STORESYNC_CRASH_SEED=$(SEED) $(GO) test -count=1 -race -run TestCrashRecovery -v ./store/

# make run: the devnet. A primary producing a standard block a second (proofs
# about 3 s later), follower A following it and follower B following A, on
# fresh data directories under $(DATA); a line a second with every store's
# tips and lag. Ctrl-C stops it cleanly.
run: build
	./bin/devnet --data-dir $(DATA) --log $(DATA)/devnet.log

# A primary alone, in the foreground with its log.
primary: build
	rm -rf $(DATA)-primary
	./bin/primary init --data-dir $(DATA)-primary --chain-id devnet
	./bin/primary run --data-dir $(DATA)-primary --listen 127.0.0.1:7100 --internal-listen 127.0.0.1:7101

# A store filled directly with a synthetic chain, no network.
demo: build
	./bin/storectl demo --data-dir $(DATA)/store --profile standard --blocks 300

# Regenerate the gRPC code from api/proto with the pinned tools (tools/go.mod).
proto:
	cd api && $(GO) tool -modfile=../tools/go.mod buf generate

# CI: the committed generated code must be what `make proto` produces.
proto-check: proto
	git diff --exit-code -- api/storev1 || { echo "api/storev1 is stale: run make proto and commit"; exit 1; }

clean:
	rm -rf bin $(DATA) $(DATA)-primary
