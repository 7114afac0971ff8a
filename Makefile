# The two commands that matter: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test unit lint venv testenv-bins testenv testenv-down clean bench images

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## run: run examples/parent.yaml with the embedded local runtime and print its trace tree
run: venv
	$(VENV)/bin/flowpods run examples/parent.yaml

## test: lint, unit tests and end-to-end tests on a real control plane and Jaeger
test: lint testenv-bins
	$(VENV)/bin/pytest

## unit: the core and adapter tests (no cluster)
unit: venv
	$(VENV)/bin/pytest tests/core tests/adapters

## lint: ruff (checks and format), mypy (strict on the core) and the layering contract (import-linter, pyproject.toml)
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## testenv-bins: build (once, cached outside the repo) etcd, kube-*, kubectl, jaeger and helm from their Go modules
testenv-bins:
	bash tests/testenv/build.sh

## testenv: start the control plane, node agent and Jaeger in the background; writes .testenv/env
testenv: venv testenv-bins
	$(PY) -m tests.testenv up

## testenv-down: stop what `make testenv` started (stdlib only, works without the venv)
testenv-down:
	$(PYTHON) -m tests.testenv down

## images: build the worker/operator image with Docker (IMAGE=flowpods:dev); for users with Docker, not run by the tests (no container engine here)
IMAGE  ?= flowpods:dev
images:
	docker build -f worker-image/Dockerfile -t $(IMAGE) .

## bench: benchmarks on a fresh test environment (node agent in instant mode); see docs/benchmarks.md
bench: venv testenv-bins
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache .hypothesis
