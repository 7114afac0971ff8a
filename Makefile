# The two commands that matter: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test unit lint venv testenv-bins prometheus chromium testenv testenv-down clean bench images docker-image

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# and the package's modules compiled, as pip compiles an installed package's: an editable install's are compiled
# when imported, but not written where PYTHONDONTWRITEBYTECODE is set, so every process compiled them again
# (~40 ms of a `flowpods run`, docs/benchmarks.md)
venv: $(STAMP)
	@$(PY) -m compileall -q operator/flowpods

## run: run examples/parent.yaml with the embedded local runtime and print its trace tree
run: venv
	$(VENV)/bin/flowpods run examples/parent.yaml

## test: lint, unit tests and end-to-end tests on a real control plane, a real kubelet node and Jaeger
test: lint testenv-bins images prometheus chromium
	@# two pytest-xdist workers, each with an environment of its own (tests/e2e/conftest.py), a test file at a time.
	@# A bound on the whole suite: a process that outlives its test fails CI with a reason, not a hang
	timeout --kill-after=30 45m $(VENV)/bin/pytest -n 2 --dist loadfile || { rc=$$?; [ $$rc = 124 ] && echo "make test: pytest did not end within 45 min (a hung test or a process left behind)" >&2; exit $$rc; }

## unit: the core and adapter tests (no cluster)
unit: venv
	$(VENV)/bin/pytest tests/core tests/adapters

## lint: ruff (checks and format), mypy (strict on the core) and the layering contract (import-linter, pyproject.toml)
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## testenv-bins: build (once, cached outside the repo) etcd, kube-*, kubectl, jaeger, helm, kubelet, pause,
## kube-proxy and coredns from their Go modules
testenv-bins:
	bash tests/testenv/build.sh

## prometheus: Debian's prometheus package, which the metrics end-to-end test scrapes the operator with (installed when missing)
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus; }

## chromium: Debian's chromium and chromium-driver, the headless browser the run view's end-to-end tests drive
## with Selenium (installed when missing)
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver; }

## testenv: start the control plane, the real node (FLOWPODS_TESTENV_NODE=agent: the node agent) and Jaeger in
## the background; writes .testenv/env
testenv: venv testenv-bins images
	$(PY) -m tests.testenv up

## testenv-down: stop what `make testenv` started (stdlib only, works without the venv)
testenv-down:
	$(PYTHON) -m tests.testenv down

## images: the real node's packages (apt-get: containerd, runc, debootstrap, iptables, conntrack; CNI plugins unpacked) and images
## (pause, Debian base, the worker/operator image of worker-image/Dockerfile) without a container engine, cached
images: venv testenv-bins
	$(PY) -m tests.testenv images

## docker-image: build the worker/operator image with Docker (IMAGE=flowpods:dev), for users with Docker
IMAGE  ?= flowpods:dev
docker-image:
	docker build -f worker-image/Dockerfile -t $(IMAGE) .

## bench: benchmarks on a fresh test environment (node agent in instant mode); see docs/benchmarks.md
bench: venv testenv-bins
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache .hypothesis
