# Two commands: `make run` starts everything on this machine; `make test` runs every test.
# `make help` lists the rest.

SHELL := /bin/bash
PY_VERSION ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SCP := dicom_scp_server
export TCP_NODELAY := 1

.DEFAULT_GOAL := help
.PHONY: help run test lint lint-python lint-rust migrations-check fmt bench bench-ai bench-dicomweb bench-qr bench-viewer profile-api profile-ingest install install-test clean

help:  ## list the targets
	@awk -F ':.*## ' '/^[a-z-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: install  ## install what is missing, build, migrate and start every service (Ctrl-C stops)
	$(PY) -m ops.run

test: install-test lint  ## every test: lint, cargo test, pytest (unit, integration, e2e, browser)
	$(PY) -m ops.testrun

bench: install-test  ## ingest benchmark against dcmtk storescp, then bench-dicomweb (figures, not pass/fail)
	$(PY) -m ops.bench
	$(PY) -m ops.bench_dicomweb
	$(PY) -m ops.bench_ai
	$(PY) -m ops.bench_viewer
	$(PY) -m ops.bench_qr

bench-viewer: install-test  ## viewer in headless Chromium: click to first image and scroll fps on a 300-slice CT
	$(PY) -m ops.bench_viewer

bench-ai: install-test  ## AI analyses/s (completeness, quality) on a 300-slice CT, 1 and 2 processors
	$(PY) -m ops.bench_ai

bench-qr: install-test  ## C-FIND latency and C-MOVE instances/s vs Orthanc, C-FIND at 1M instances (BENCH_QR_*; ARGS=--quick)
	$(PY) -m ops.bench_qr $(ARGS)

bench-dicomweb: install-test  ## DICOMweb latency at 1M instances and vs Orthanc (BENCH_INSTANCES, BENCH_REQUESTS; ARGS=--quick)
	$(PY) -m ops.bench_dicomweb $(ARGS)

profile-api: install-test  ## FastAPI CPU ms per request per query kind (PROFILE_*; ARGS=--profile for a cProfile top list)
	$(PY) -m ops.profile_api $(ARGS)

profile-ingest: install-test  ## the stack alone under storescu: inst/s, CPU ms, context switches and store phases per instance (ARGS=--associations 1)
	$(PY) -m ops.profile_ingest $(ARGS)

lint: lint-python lint-rust migrations-check  ## what CI and pre-commit enforce

lint-python: install-test  ## ruff check + format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

lint-rust:  ## cargo fmt + clippy, warnings are errors
	cd $(SCP) && cargo fmt --all -- --check && cargo clippy --release --all-targets -- -D warnings

migrations-check: install-test  ## Django owns the schema: models and migrations agree
	DJANGO_SETTINGS_MODULE=noctis_pro.settings.test $(PY) manage.py makemigrations --check --dry-run

fmt: install-test  ## format Python and Rust
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format . && cd $(SCP) && cargo fmt --all

install: $(VENV)/.run-installed scp-release viewer-build  ## Debian packages, the virtualenv, the release SCP, the viewer bundle

install-test: $(VENV)/.test-installed scp-release viewer-build

$(VENV)/.run-installed: requirements.txt
	@ops/install-system.sh run
	@test -x $(PY) || $(PY_VERSION) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.test-installed: $(VENV)/.run-installed requirements-dev.txt
	@ops/install-system.sh test
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# The viewer bundle (Cornerstone3D, vite) into noctis_pro/static/viewer/, where collectstatic finds it. File
# targets: `npm ci` only when the lockfile changed, the build only when a source did. Needs Node >= 20.19.
VIEWER := viewer
VIEWER_BUNDLE := noctis_pro/static/viewer/viewer.js
.PHONY: viewer-build
viewer-build: $(VIEWER_BUNDLE)  ## build the viewer bundle (npm ci + vite) when its sources changed

$(VIEWER)/node_modules/.package-lock.json: $(VIEWER)/package-lock.json $(VIEWER)/package.json
	@command -v npm >/dev/null || { echo "the viewer needs Node.js >= 20.19 and npm (not found)" >&2; exit 1; }
	cd $(VIEWER) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(VIEWER_BUNDLE): $(VIEWER)/node_modules/.package-lock.json $(VIEWER)/vite.config.js $(wildcard $(VIEWER)/src/*)
	cd $(VIEWER) && npm run --silent build -- --logLevel warn
	@touch $@

.PHONY: scp-release
scp-release: $(VENV)/.run-installed
	cd $(SCP) && cargo build --release --locked

clean:  ## remove build output and the virtualenv (keeps var/: the embedded database and images)
	rm -rf $(SCP)/target $(VENV)
