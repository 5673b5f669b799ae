# The README's commands. Everything runs from a virtualenv in .venv, created on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# cdk: aws-cdk-lib and cdk-nag for the infra tests (they need Node.js 20+ for jsii).
EXTRAS ?= local,models,dev,cdk
# torch==2.13.0 must be the CPU build: a plain PyPI torch is a multi-GB CUDA build.
# /opt/wheels holds the CPU wheel on our machines; elsewhere pass
# TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH_PIP_ARGS ?= $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)-$(EXTRAS)

.PHONY: install run test lint typecheck audit unit integration docs template layer synth clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]' $(TORCH_PIP_ARGS)
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## Run Quarry locally on embedded defaults (SQLite, Milvus Lite, in-process models).
run: install
	$(BIN)/quarry serve

## Lint, type-check, and run the whole test suite with coverage (what CI runs).
test: install lint typecheck audit
	$(BIN)/quarry config docs --check
	$(BIN)/python -m pytest --cov --cov-report=term --cov-report=xml:coverage.xml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

## Security: bandit fails on any medium or high finding; pip-audit fails on a known vulnerability
## (it needs the PyPI vulnerability service: offline, it lists what it could not audit).
audit: install
	$(BIN)/bandit -q -r shared functions gpu_endpoint --severity-level medium
	$(BIN)/pip-audit --skip-editable --progress-spinner off

unit: install
	$(BIN)/python -m pytest -m unit

integration: install
	$(BIN)/python -m pytest -m integration

docs: install
	$(BIN)/quarry config docs

## Regenerate template.yaml (for sam local) from the CDK app.
template: install
	$(BIN)/python infra/cdk/synth_template.py

## Build the shared Lambda layer into layers/build/python (fails over 250 MB).
layer: install
	$(BIN)/python layers/build_layer.py

## Synthesize the stack to infra/cdk/cdk.out (-c pairs via CDK_ARGS="-c stage=prod").
synth: install
	$(BIN)/python infra/cdk/app.py $(CDK_ARGS)

clean:
	rm -rf $(VENV) .quarry .pytest_cache .mypy_cache .ruff_cache coverage.xml .coverage
