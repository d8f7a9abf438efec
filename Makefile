# jobplatform development tasks (GNU make).
#
#   make run      virtualenv + PostgreSQL/Redis, migrate, demo operator, then every process
#                 (web, dispatcher, worker, beat, flower) under supervisord, which restarts any
#                 that dies. Ctrl-C stops them all.
#   make test     ruff check, ruff format --check, mypy (pyproject.toml: strict on the apps and client/),
#                 mkdocs build --strict (the docs site, built into $(RUN_DIR)/site), pytest
#                 (PYTEST_ARGS="-k foo -x" passes through)
#   make lint     ruff check + ruff format --check;   make fmt   reformat and autofix
#   make services start PostgreSQL and Redis (scripts/services.sh);  make stop   stop them
#   make bench    benchmarks side by side with bare Celery (see docs/performance.md)
#   make clean    stop the services and delete .run (database, redis files, static files, keys)
#
# The servers live under $(RUN_DIR) and keep running after `make run`/`make test` so the next
# run starts fast; `make stop` stops them. scripts/env.sh supplies the environment (DATABASE_URL,
# REDIS_URL, DJANGO_SECRET_KEY, ...); anything already exported in your shell wins. The .env file
# is for docker compose and is not read here.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
RUN_DIR ?= $(CURDIR)/.run
PYTEST_ARGS ?=
export RUN_DIR

VENV_BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# Every recipe that runs the application: the development environment and the virtualenv first.
APP_ENV := source scripts/env.sh; export PATH="$(VENV_BIN):$$PATH"

.PHONY: help venv services run stop test lint fmt clean bench

help:
	@echo "targets: run test lint fmt services stop clean venv (see the top of the Makefile)"

venv: $(STAMP)

# Reinstalls only when a requirements file is newer than the stamp.
$(STAMP): requirements.txt requirements-dev.txt client/pyproject.toml
	@if [ ! -x "$(VENV_BIN)/python" ]; then
	  echo "creating virtualenv $(VENV)"
	  $(PYTHON) -m venv "$(VENV)"
	fi
	echo "installing requirements-dev.txt into $(VENV)"
	"$(VENV_BIN)/python" -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch "$@"

services:
	scripts/services.sh start

# The Procfile's processes run under supervisord (jobplatform/supervise.py): one that dies is
# restarted and logged; Ctrl-C stops them all. PostgreSQL and Redis keep running for the next
# run (`make stop` stops them).
run: venv services
	@$(APP_ENV)
	export PYTHONUNBUFFERED=1
	# Every process writes its metrics there and the web server's /metrics adds them up
	# (jobplatform/metrics.py); emptied at each start, as prometheus-client requires.
	export PROMETHEUS_MULTIPROC_DIR="$$RUN_DIR/prometheus"
	rm -rf "$$PROMETHEUS_MULTIPROC_DIR"
	mkdir -p "$$PROMETHEUS_MULTIPROC_DIR"
	python manage.py migrate --noinput
	python manage.py collectstatic --noinput -v0
	if [ -z "$${DEMO_PASSWORD:-}" ]; then
	  if [ ! -s "$$RUN_DIR/demo-password" ]; then
	    (umask 077; python -c 'import secrets; print(secrets.token_urlsafe(12))' > "$$RUN_DIR/demo-password")
	  fi
	  DEMO_PASSWORD="$$(cat "$$RUN_DIR/demo-password")"
	fi
	# An operator (submits, cancels, retries; sees its own and its teams' work) who may log in
	# to the admin; not a superuser.
	python manage.py issue_token demo --role operator --staff --password "$$DEMO_PASSWORD"
	# Flower asks for a login too (flowerconfig.py): the demo user's, unless one is configured.
	if [ -z "$${JOBPLATFORM_FLOWER_AUTH:-}$${JOBPLATFORM_FLOWER_AUTH_FILE:-}" ]; then
	  export JOBPLATFORM_FLOWER_AUTH="demo:$$DEMO_PASSWORD"
	  flower_login="user demo, password $$DEMO_PASSWORD"
	else
	  flower_login="the credentials of JOBPLATFORM_FLOWER_AUTH"
	fi
	web_port="$${WEB_PORT:-8000}"
	printf '\n%s\n' "jobplatform is starting: Ctrl-C stops it, then \`make stop\` stops PostgreSQL and Redis"
	printf '  %-7s %s\n' \
	  API "http://127.0.0.1:$$web_port/api/v1/  (header 'Authorization: Token <the token above>')" \
	  Admin "http://127.0.0.1:$$web_port/admin/  (user demo, password $$DEMO_PASSWORD)" \
	  Metrics "http://127.0.0.1:$$web_port/metrics  (header 'Authorization: Bearer $$JOBPLATFORM_METRICS_TOKEN'; health: /healthz, /readyz)" \
	  Flower "http://127.0.0.1:$${FLOWER_PORT:-5555}/  ($$flower_login)"
	echo
	exec python -m jobplatform.supervise Procfile

stop:
	scripts/services.sh stop

test: venv services
	@$(APP_ENV)
	status=0
	echo "== ruff check"
	ruff check . || status=1
	echo "== ruff format --check"
	ruff format --check . || status=1
	# Type checking (pyproject.toml [tool.mypy]). django-stubs loads the settings, hence after
	# scripts/env.sh; the cache is .mypy_cache (a cached run takes seconds).
	echo "== mypy"
	mypy || status=1
	# The docs site (mkdocs.yml): --strict fails on a broken link or anchor, or a page left out of
	# the nav. No network needed. NO_MKDOCS_2_WARNING silences Material's end-of-life banner. Not
	# -q: it hides the warnings that --strict counts, and a broken link would pass.
	echo "== mkdocs build --strict"
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict --site-dir "$$RUN_DIR/site" || status=1
	echo "== pytest"
	python -m pytest $(PYTEST_ARGS) || status=1
	exit $$status

# Benchmarks against bare Celery on a PostgreSQL and Redis of their own (.run/bench, other
# ports); BENCH_ARGS="--runs 1 --only throughput" narrows it. Results: bench/results/*.json.
BENCH_ARGS ?=
bench: venv
	export PATH="$(VENV_BIN):$$PATH"
	python -m bench $(BENCH_ARGS)

lint: venv
	export PATH="$(VENV_BIN):$$PATH"
	status=0
	ruff check . || status=1
	ruff format --check . || status=1
	exit $$status

fmt: venv
	export PATH="$(VENV_BIN):$$PATH"
	ruff format .
	ruff check --fix .

clean:
	scripts/services.sh stop
	rm -rf .run staticfiles .pytest_cache .ruff_cache .mypy_cache
	if [ "$(RUN_DIR)" != "$(CURDIR)/.run" ]; then echo "left RUN_DIR=$(RUN_DIR) in place"; fi
