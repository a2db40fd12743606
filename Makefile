# Set-up on a fresh machine needs only Python 3.11: uv is bootstrapped into .uv/,
# then every workspace member is synced into .venv/ from uv.lock, compiled to bytecode: the
# tests start hundreds of Python processes, and under PYTHONDONTWRITEBYTECODE each of them would
# compile every module it imports (bentoml, kfp, airflow, flytekit...) again.
PYTHON ?= python3.11
UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
TEST_WORKERS ?= 3
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

.PHONY: install browser test test-fast lint format demo bench clean

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

# The members' versions are dynamic (hatch reads each package's __version__), so the files that
# hold them are inputs of the sync too.
VERSION_FILES := core/src/bentoship/_version.py airflow_provider/src/bentoship_airflow/__init__.py \
	kfp_components/src/bentoship_kfp/_version.py flyte_plugin/src/flytekitplugins/bentoship/__init__.py

$(VENV)/.synced: $(UV) uv.lock pyproject.toml core/pyproject.toml airflow_provider/pyproject.toml kfp_components/pyproject.toml flyte_plugin/pyproject.toml $(VERSION_FILES)
	$(UV) sync --all-packages --locked --compile-bytecode --python $(PYTHON)
	touch $@

install: $(VENV)/.synced

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Debian's chromium for the console's browser tests, installed when missing: in the background,
# beside lint and the tests (the browser test waits for it, and fails, never skips, without it).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BROWSER_LOG := test-artifacts/browser-install.log
INSTALL_BROWSER := mkdir -p test-artifacts && rm -f $(BROWSER_LOG).rc && \
	{ $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	chromium chromium-driver; } > $(BROWSER_LOG) 2>&1; echo $$? > $(BROWSER_LOG).rc

browser:
	test -x $(CHROMIUM) || { $(INSTALL_BROWSER); cat $(BROWSER_LOG).rc; test -x $(CHROMIUM); }

# pytest's summary reports how long the whole `make test` took (tests/conftest.py reads this).
test: export BENTOSHIP_TEST_STARTED := $(shell date +%s)
# Where PYTHONDONTWRITEBYTECODE is set (as on this project's machines), each Python process the
# tests start would compile the workspace's modules again, and each pytest process (the xdist
# workers, the sessions the plugin's tests run) would redo pytest's assertion rewriting of the
# test modules and of the plugins' packages (bentoship, hypothesis, schemathesis): most of a
# worker's collection. The test targets let them cache it in __pycache__ (which git ignores).
test test-fast: export PYTHONDONTWRITEBYTECODE :=
# mypy (one core, half a minute on a clean clone) runs beside the tests rather than before them.
test: install
	test -x $(CHROMIUM) || ( $(INSTALL_BROWSER) ) &
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m tests.meter -- sh -c '\
	$(VENV)/bin/mypy > .mypy.out 2>&1 & mypy=$$!; \
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
		--durations=15; tests=$$?; \
	wait $$mypy; typed=$$?; cat .mypy.out; rm -f .mypy.out; \
	test $$tests -eq 0 && test $$typed -eq 0'

# The unit tier: no process, no server; on both cores, under 40 s.
test-fast: install
	$(VENV)/bin/python -m pytest -m "not slow" -q -n 2

demo: install
	$(VENV)/bin/python dags_examples/demo.py

bench: install
	$(VENV)/bin/python -m bench

clean:
	rm -rf .uv $(VENV)
