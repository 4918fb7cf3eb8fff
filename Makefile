# Two commands on a fresh clone: `make run` and `make test`.
# Any other management command on the local defaults (SQLite and files under
# var/, no servers): DEBUG=1 .venv/bin/python manage.py …
# Without DEBUG=1, settings require every production value
# (docs/configuration.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
export PORT

.PHONY: run demo shell test lint format typecheck clean translations messages

# pytest's processes (pytest-xdist), each test module whole in one of them
# (a module's running services are started once). Two: the suite is mostly
# CPU-bound (Chromium, gunicorn, Celery), and the test Redis has six spare
# databases for the modules running at once.
TEST_PROCESSES ?= 2

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever the pinned dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

# Compiled translations (.mo) are build output, not kept in git: rebuilt from
# each .po that changed, with Babel's pybabel (no GNU gettext needed). It
# exits non-zero on a broken placeholder; the .mo replaces the old one only
# when it compiled cleanly.
MO_FILES := $(patsubst %.po,%.mo,$(wildcard locale/*/LC_MESSAGES/*.po))

$(MO_FILES): %.mo: %.po | $(VENV)/.installed
	$(BIN)/pybabel compile -i $< -o $@.partial
	mv $@.partial $@

translations: $(MO_FILES)

# After changing any patient-facing wording: update each .po, then translate
# the new strings (tests/test_i18n.py fails while one is left untranslated).
# Staff pages (templates/admin) stay English, so they are not extracted.
messages: $(VENV)/.installed
	DEBUG=1 $(BIN)/python manage.py makemessages --locale=es --no-obsolete \
		--ignore=.venv --ignore=node_modules --ignore=var --ignore=tests --ignore=templates/admin

# Web server, Celery worker and Celery beat on one machine with no servers:
# SQLite and the filesystem broker under var/, emails as .eml in var/mail/.
run: export DEBUG ?= 1
run: export SITE_URL ?= http://127.0.0.1:$(PORT)
run: $(VENV)/.installed $(MO_FILES)
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py ensure_local_admin --url http://127.0.0.1:$(PORT)/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

# Demo reset requests in every status in the local database, for trying the
# admin: make demo DEMO_ARGS="--requests 500 --seed 1" (seed_demo --help).
# Each run adds more.
DEMO_ARGS ?=
demo: export DEBUG ?= 1
demo: $(VENV)/.installed
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py seed_demo $(DEMO_ARGS)

# Django's shell on the local defaults.
shell: export DEBUG ?= 1
shell: $(VENV)/.installed $(MO_FILES)
	$(BIN)/python manage.py shell

# axe-core for tests/test_accessibility.py, reinstalled when the lock file
# changes. Without npm (or the registry) make goes on: the browser tests then
# skip, saying why, or fail under REQUIRE_SERVICES=1.
node_modules/.installed: package.json package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "npm not found: tests that need axe-core will skip"; \
	elif npm ci --no-audit --no-fund; then \
		touch $@; \
	else \
		echo "npm ci failed: tests that need axe-core will skip"; \
	fi

# The patient pages' one stylesheet, static/css/patient.min.css: Bootstrap's
# compiled CSS and static/css/site.css with only what templates/,
# crispy-forms' templates, static/js/ and requests_app/ use (PurgeCSS,
# assets/css/build.mjs, set up in assets/css/patient.json). The built file
# is committed, so a checkout needs no npm to run; rebuild it after changing
# site.css or a template's classes (tests/test_css_build.py fails while it
# is stale). Needs Node.js and npm.
CRISPY_TEMPLATES = $$($(BIN)/python -c 'import crispy_bootstrap5, pathlib; print(pathlib.Path(crispy_bootstrap5.__file__).parent / "templates")')

.PHONY: css
css: $(VENV)/.installed
	@command -v npm >/dev/null 2>&1 || { echo "make css needs Node.js and npm"; exit 1; }
	npm ci --no-audit --no-fund
	touch node_modules/.installed
	node assets/css/build.mjs --crispy-templates "$(CRISPY_TEMPLATES)"

test: $(VENV)/.installed $(MO_FILES) node_modules/.installed
	$(BIN)/ruff check .
	DEBUG=1 $(BIN)/mypy
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(VENV)/.installed
	DEBUG=1 $(BIN)/mypy

clean:
	rm -rf $(VENV) var/test .pytest_cache

# Benchmarks (docs/benchmarks.md). Not part of `make test`: about
# ten minutes, on PostgreSQL (BENCH_POSTGRES_URL, default the local
# server) with redis-server and wrk on PATH. Installs wrk as root with
# apt-get when it is missing, and django-helpdesk (the comparison target)
# into a virtualenv of its own under var/bench-helpdesk/ from PyPI on the
# first run. Writes bench/results.json (the headline figures) and
# var/bench/<run>/results-full.json (every round), and prints the table.
# On a shared machine run one benchmark at a time: each takes both cores.
.PHONY: bench
bench: $(VENV)/.installed $(MO_FILES)
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -qq wrk || { apt-get update -qq && apt-get install -y -qq wrk; }; }; } || \
		{ echo "make bench needs wrk: apt-get install -y wrk"; exit 1; }
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Known vulnerabilities in what `make` installs (docs/security-and-privacy.md,
# "Dependencies"). pip-audit lives in its own virtualenv under var/, so that
# neither it nor its dependencies land in .venv; it checks every package
# installed in .venv (the pins in pyproject.toml and what they pull in) at
# its installed version, without resolving anything again. It needs HTTPS
# access to a vulnerability database: PyPI's JSON API (pypi.org, the
# default) or, with PIP_AUDIT_SERVICE=osv, api.osv.dev. --strict: a package
# it could not check fails the audit, as a vulnerability does; offline it
# can never pass.
PIP_AUDIT_VERSION := 2.10.1
PIP_AUDIT_SERVICE ?= pypi
AUDIT_DIR := var/pip-audit
.PHONY: audit
audit: $(VENV)/.installed
	@$(AUDIT_DIR)/venv/bin/pip-audit --version 2>/dev/null | grep -qx 'pip-audit $(PIP_AUDIT_VERSION)' || \
		{ $(PYTHON) -m venv $(AUDIT_DIR)/venv && \
		  $(AUDIT_DIR)/venv/bin/pip install --quiet --disable-pip-version-check pip-audit==$(PIP_AUDIT_VERSION); }
	$(BIN)/pip freeze --exclude-editable --disable-pip-version-check > $(AUDIT_DIR)/requirements.txt
	@echo "pip-audit: $$(wc -l < $(AUDIT_DIR)/requirements.txt) packages against '$(PIP_AUDIT_SERVICE)' (needs HTTPS to $(if $(filter osv,$(PIP_AUDIT_SERVICE)),api.osv.dev,pypi.org))"
	@$(AUDIT_DIR)/venv/bin/pip-audit --requirement $(AUDIT_DIR)/requirements.txt --no-deps --disable-pip --strict \
		--vulnerability-service $(PIP_AUDIT_SERVICE) --progress-spinner off || { \
		echo "make audit failed: either pip-audit lists a known vulnerability above (move that pin in pyproject.toml"; \
		echo "to the release that fixes it), or it could not check a package: it needs HTTPS access to the"; \
		echo "vulnerability database ('Dependency not found on PyPI' or a connection error means it had none)."; \
		exit 1; }
