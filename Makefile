# prepull's two entry points: `make test` runs every check CI runs; `make bench` starts the
# local AWS bench. Both install what they need into project-local venvs first.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
PIP_FLAGS := --quiet --disable-pip-version-check
export SAM_CLI_TELEMETRY := 0

.PHONY: setup test demo bench benchmark clean

setup: $(VENV)/.installed $(SAM_VENV)/.installed

$(VENV)/.installed: requirements/bench.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -r requirements/bench.txt
	touch $@

$(SAM_VENV)/.installed: requirements/sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install $(PIP_FLAGS) -r requirements/sam.txt
	touch $@

test: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked
	$(SAM_VENV)/bin/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --lint --region us-east-1 --template template.yaml

demo: $(VENV)/.installed
	cargo build --quiet --locked -p image-pushed -p patch-day -p build-finished
	cargo run --quiet --locked -p prepull-tests --bin prepull-demo -- $(DEMO_ARGS)

bench: $(VENV)/.installed
	cargo run --quiet --locked -p prepull-tests --bin prepull-bench -- $(BENCH_ARGS)

benchmark: $(VENV)/.installed
	cargo run --quiet --locked --release -p prepull-tests --bin prepull-benchmark

clean:
	rm -rf $(VENV) $(SAM_VENV) target .aws-sam
