# Packetwatch — make is the human interface. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Debian packages the build, the tests and the benchmarks need.
# prometheus ships promtool, which lints both services' /metrics in the tests.
DEB_PACKAGES := clang llvm libbpf-dev bpftool linux-libc-dev make g++ python3 \
                iproute2 nmap hping3 curl libxdp1 util-linux prometheus tcpdump

MULTIARCH := $(shell uname -m)-linux-gnu
BPF_CFLAGS := -O2 -g -Wall -Werror -target bpf -I bpf -I /usr/include/$(MULTIARCH)
BPF_OBJ := bpf/build/packetwatch.bpf.o
# The same program with its clock read from a map: the detection tests give each SYN its time.
BPF_TEST_CLOCK_OBJ := bpf/build/packetwatch-test-clock.bpf.o
NATIVE := packages/libbpf-ts/build/Release/bpf_ts.node
PROTO_SRC := $(wildcard proto/packetwatch/v1/*.proto)
PROTO_GEN := proto/gen/packetwatch/v1/probe.ts

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# Installing must not start daemons (prometheus would take :9090, the probe's
# metrics port): a policy-rc.d refuses them for the length of the install,
# unless the machine has its own.
.PHONY: deps
deps: ## Install the Debian packages the build and tests need (only those missing)
	@missing=$$(for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; exit 0; fi; \
	echo "deps: missing Debian packages: $$missing"; \
	if ! command -v apt-get >/dev/null; then \
	  echo "deps: apt-get not found; install these packages with your package manager: $$missing" >&2; exit 1; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "deps: installing packages needs root; run 'sudo make deps' (or install: $$missing)" >&2; exit 1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	own_policy=; [ -e /usr/sbin/policy-rc.d ] && own_policy=1; \
	if [ -z "$$own_policy" ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; fi; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; code=$$?; \
	[ -n "$$own_policy" ] || rm -f /usr/sbin/policy-rc.d; exit $$code
	@# The policy runs as this unprivileged user (make run, the e2e suites).
	@if ! getent passwd packetwatch >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "deps: creating the 'packetwatch' user needs root; run 'sudo make deps'" >&2; exit 1; fi; \
	  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin packetwatch; \
	  echo "deps: created system user 'packetwatch' (runs the policy service)"; fi
	@# The probe and the policy talk through sockets of this group's, which operators are not in (SECURITY.md).
	@if ! id -nG packetwatch | tr ' ' '\n' | grep -qx packetwatch-control; then \
	  if [ "$$(id -u)" != 0 ]; then echo "deps: creating the 'packetwatch-control' group needs root; run 'sudo make deps'" >&2; exit 1; fi; \
	  getent group packetwatch-control >/dev/null || groupadd --system packetwatch-control; \
	  usermod -a -G packetwatch-control packetwatch; \
	  echo "deps: the 'packetwatch' user is in the 'packetwatch-control' group (its channel with the probe)"; fi

node_modules/.package-lock.json: package-lock.json $(wildcard */package.json */*/package.json)
	npm ci --no-audit --no-fund
	@touch $@

.PHONY: install
install: node_modules/.package-lock.json ## npm ci (builds the libbpf-ts addon)

$(BPF_OBJ): bpf/packetwatch.bpf.c bpf/packetwatch.h
	@mkdir -p $(@D)
	clang $(BPF_CFLAGS) -c $< -o $@

$(BPF_TEST_CLOCK_OBJ): bpf/packetwatch.bpf.c bpf/packetwatch.h
	@mkdir -p $(@D)
	clang $(BPF_CFLAGS) -DPW_VARIANT_TEST_CLOCK -c $< -o $@

.PHONY: bpf
bpf: $(BPF_OBJ) $(BPF_TEST_CLOCK_OBJ) ## Compile the XDP program (and its test-clock build)

$(NATIVE): packages/libbpf-ts/src/native/binding.cc packages/libbpf-ts/binding.gyp | node_modules/.package-lock.json
	npm run build:native -w libbpf-ts

$(PROTO_GEN): $(PROTO_SRC) buf.yaml proto/buf.gen.yaml | node_modules/.package-lock.json
	npm run generate -w @packetwatch/proto
	@touch $@

.PHONY: proto
proto: $(PROTO_GEN) ## Lint the protos (buf) and generate their TypeScript (ts-proto)

.PHONY: build
build: install bpf $(NATIVE) proto ## Build everything: XDP object, libbpf-ts addon, protocol code, TypeScript
	npx tsc -b
	@# npm links a workspace's bin only if its file exists: link packetwatchctl (npx packetwatchctl) once it is built.
	@test -x node_modules/.bin/packetwatchctl || npm rebuild --ignore-scripts @packetwatch/cli >/dev/null

# Settings passed through to the services (sudo make run PW_IFDEV=eth0 ...).
export PW_IFDEV PW_PORTSCAN_TIME_THRESHOLD PW_PORTSCAN_PORT_THRESHOLD PW_FLEET_PORT_THRESHOLD PW_PROMETHEUS_PORT PW_WHITELIST_SELF \
       PW_POLICY_PROMETHEUS_PORT PW_BLOCK_TTL PW_BLOCK_TTL_FACTOR PW_BLOCK_TTL_MAX PW_ALLOWLIST PW_XDP_MODE PW_DROP_MODE PW_LOG_LEVEL PW_LOG_FORMAT \
       PW_KERNEL_DETECTION PW_MAX_BLOCKS_PER_MINUTE PW_MAX_TRACKED_SOURCES PW_ENFORCE PW_ENFORCE_SHADOW_DECISIONS PW_PORTSCAN_COUNT PW_OPEN_PORTS

.PHONY: run
run: deps build ## Probe + policy on PW_IFDEV (default lo) in the foreground with the live table (root)
	deploy/run.sh

.PHONY: certs
certs: ## A development CA and certificates for mutual TLS over TCP (in ./certs)
	deploy/certs.sh certs

.PHONY: detach
detach: build ## Remove the XDP program, its maps and pins from PW_IFDEV (root)
	node services/probe/dist/main.js detach

.PHONY: test
test: deps docker-deps install build images ## Install what is missing, build, and run every suite (root; Docker for the compose suite)
	npx vitest run --project unit --project privileged --project compose

.PHONY: unit-test
unit-test: build ## Unit suites only (no privileges; the seed's name)
	npx vitest run --project unit

.PHONY: test-privileged
test-privileged: build ## Privileged suites only: datapath, libbpf-ts, network namespaces (root)
	npx vitest run --project privileged

.PHONY: e2e-black
e2e-black: build ## The seed's e2e-black suite: an attacker namespace scanning a victim running probe + policy (root)
	npx vitest run test/e2e/black.root.test.ts

.PHONY: e2e-white
e2e-white: build ## The seed's e2e-white suite: the victim's own address is never blocked (root)
	npx vitest run test/e2e/white.root.test.ts

.PHONY: e2e-cli
e2e-cli: build ## packetwatchctl as a real process against probe + policy in namespaces (root)
	npx vitest run test/e2e/cli.root.test.ts

# ---- Containers: deploy/compose.yml (deploy/README.md) ----
COMPOSE_PROJECT ?= packetwatch
COMPOSE = $(shell deploy/docker-engine.sh compose) -p $(COMPOSE_PROJECT) -f deploy/compose.yml
export BASE_IMAGE PW_IMAGE_TAG

.PHONY: docker-deps
docker-deps: ## Install Docker (Debian's docker.io, docker-compose) and debootstrap when missing; start dockerd when none runs (root)
	@deploy/docker-engine.sh install
	@deploy/docker-engine.sh start

.PHONY: images
images: docker-deps ## Build the probe, policy and prometheus images (BASE_IMAGE pulled, else bootstrapped with debootstrap)
	deploy/images.sh

.PHONY: up
up: images ## docker compose up -d: probe on PW_IFDEV (default lo), policy, Prometheus on 127.0.0.1:9092 (root)
	@mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	$(COMPOSE) up -d
	@$(COMPOSE) ps

.PHONY: stop
stop: ## Stop what make run (foreground or background) and make up started, and say what; the XDP program stays (make detach)
	@deploy/stop.sh $(if $(shell command -v docker),$(COMPOSE))

.PHONY: down
down: ## Stop and remove the compose stack; volumes and the attached XDP program stay (make compose-detach)
	$(COMPOSE) down

.PHONY: logs
logs: ## Follow the compose stack's logs
	$(COMPOSE) logs -f --tail=100

.PHONY: compose-detach
compose-detach: ## Remove the XDP program, maps and pins from PW_IFDEV with the probe image (root)
	$(COMPOSE) run --rm --no-deps probe detach

.PHONY: test-compose
test-compose: deps docker-deps install images ## The compose suite: the images and deploy/compose.yml under testcontainers (root, Docker)
	npx vitest run --project compose

.PHONY: bench-datapath
bench-datapath: build ## ns/packet of each datapath path next to an empty XDP program and xdp-filter (root)
	node --enable-source-maps bench/dist/datapath.js

.PHONY: bench-probe
bench-probe: build ## Probe API round trip (BlockIp, GetStatus) and zero-loss event rate to a policy stream (root)
	node --enable-source-maps bench/dist/probe.js

.PHONY: bench-detection
bench-detection: build ## Detection-to-block latency, in-kernel vs policy alone, idle and under 500k SYN/s (root)
	node --enable-source-maps bench/dist/detection.js

.PHONY: bench-leak
bench-leak: build ## SYNs an nmap -T5 scan gets past the threshold, in-kernel detection on and off (root)
	node --enable-source-maps bench/dist/leak.js

.PHONY: bench-pipeline
bench-pipeline: build ## Zero-loss SYN events/s through XDP, probe and policy (bpftool and hping3 drivers) (root)
	node --enable-source-maps bench/dist/pipeline.js

.PHONY: bench-memory
bench-memory: build ## Policy RSS per tracked source (10^6 IPv4 and IPv6 sources) and probe RSS across a 60 s SYN flood (root)
	node --enable-source-maps bench/dist/memory.js

.PHONY: bench-scaling
bench-scaling: build ## How policy CPU, memory and detections move with N, sources and probes; tables and docs/scaling.svg (root)
	node --enable-source-maps bench/dist/scaling.js

.PHONY: bench-replay
bench-replay: build ## packetwatchctl replay's rate in frames/s on generated 5M-frame captures (mixed traffic, all new sources)
	node --enable-source-maps bench/dist/replay.js

.PHONY: bench-summary
bench-summary: build ## One table of every bench's figures: bench/results.json and the Summary of BENCHMARKS.md
	node --enable-source-maps bench/dist/summary.js

.PHONY: bench
bench: bench-datapath bench-probe bench-pipeline bench-detection bench-leak bench-memory bench-scaling bench-replay ## Every benchmark, then the summary table (root; a few minutes)
	node --enable-source-maps bench/dist/summary.js

.PHONY: clean
clean: ## Remove build output
	rm -rf bpf/build packages/libbpf-ts/build proto/gen */dist */*/dist bench/dist node_modules/.cache
