# prepull's two entry points: `make test` runs every check CI runs; `make bench` starts the
# local AWS bench. Both install what they need into project-local venvs first.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
PIP_FLAGS := --quiet --disable-pip-version-check
FUNCTION_BINS := --bin image-pushed --bin patch-day --bin build-finished
export SAM_CLI_TELEMETRY := 0

.PHONY: setup check test reliability demo bench benchmark clean

setup: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed
	rustup target add aarch64-unknown-linux-gnu

$(VENV)/.installed: requirements/bench.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -r requirements/bench.txt
	touch $@

$(SAM_VENV)/.installed: requirements/sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install $(PIP_FLAGS) -r requirements/sam.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install $(PIP_FLAGS) -r requirements/checkov.txt
	touch $@

# The inner loop: formatting, lints and every Rust test, without the template checks and the
# arm64 build. `make test` is what CI runs.
check: $(VENV)/.installed
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked

# cfn-lint runs once, with the serverless rules: `sam validate --lint` would only run it
# again (with `--lint`, SAM CLI skips its own validation and calls cfn-lint, which transforms
# the SAM template itself).
test: setup check
	$(MAKE) --no-print-directory reliability RELIABILITY_FUZZ_SECONDS=$(TEST_FUZZ_SECONDS)
	$(SAM_VENV)/bin/cfn-lint template.yaml --append-rules cfn_lint_serverless.rules
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --skip-download --compact --quiet
	$(SAM_VENV)/bin/python tests/template/check_event_patterns.py
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(SAM_VENV)/bin/sam build --no-cached

# Crash at every step, races and fuzzing, printed as one table (bench/results/reliability.md
# with RELIABILITY_ARGS='--results bench/results'). `make test` runs it with a short fuzz budget
# (RELIABILITY_FUZZ_SECONDS); the full run gives each fuzz target a minute. Built like `demo`.
RELIABILITY_FUZZ_SECONDS ?= 60
TEST_FUZZ_SECONDS ?= 10
reliability: $(VENV)/.installed
	cargo build --workspace --all-targets --locked
	"$${CARGO_TARGET_DIR:-target}/debug/prepull-reliability" --fuzz-seconds $(RELIABILITY_FUZZ_SECONDS) $(RELIABILITY_ARGS)

# The same package selection as `make test` (the whole workspace, every target), so both share
# one build: a narrower selection unifies features differently and rebuilds.
demo: $(VENV)/.installed
	cargo build --workspace --all-targets --locked
	"$${CARGO_TARGET_DIR:-target}/debug/prepull-demo" $(DEMO_ARGS)

bench: $(VENV)/.installed
	cargo run --quiet --locked -p prepull-tests --bin prepull-bench -- $(BENCH_ARGS)

# Release builds of what it measures: the host's functions and floor (a bare `cargo build`
# builds exactly the default members, as `sam build` does), the arm64 artifacts as `sam build`
# makes them, then the measuring binary. Results go to bench/results/.
benchmark: $(VENV)/.installed
	rustup target add aarch64-unknown-linux-gnu
	cargo build --release --locked
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --arm64 --locked $(FUNCTION_BINS)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --arm64 --locked --output-format zip $(FUNCTION_BINS)
	cargo run --quiet --locked --release -p prepull-tests --bin prepull-benchmark -- $(BENCHMARK_ARGS)

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) target .aws-sam
