# prepull's two entry points: `make test` runs every check CI runs; `make bench` starts the
# local AWS bench. Both install what they need into project-local venvs first.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
PIP_FLAGS := --quiet --disable-pip-version-check
export SAM_CLI_TELEMETRY := 0

.PHONY: setup test demo bench benchmark clean

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

test: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked
	$(SAM_VENV)/bin/cfn-lint template.yaml --append-rules cfn_lint_serverless.rules
	$(SAM_VENV)/bin/sam validate --lint --region us-east-1 --template template.yaml
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --skip-download --compact --quiet
	$(SAM_VENV)/bin/python tests/template/check_event_patterns.py
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(SAM_VENV)/bin/sam build --no-cached

# The same package selection as `make test` (the whole workspace, every target), so both share
# one build: a narrower selection unifies features differently and rebuilds.
demo: $(VENV)/.installed
	cargo build --workspace --all-targets --locked
	"$${CARGO_TARGET_DIR:-target}/debug/prepull-demo" $(DEMO_ARGS)

bench: $(VENV)/.installed
	cargo run --quiet --locked -p prepull-tests --bin prepull-bench -- $(BENCH_ARGS)

benchmark: $(VENV)/.installed
	cargo run --quiet --locked --release -p prepull-tests --bin prepull-benchmark

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) target .aws-sam
