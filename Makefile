# Switchyard: `make run` installs and starts everything; `make test` installs and runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SWITCHYARD_PORT ?= 8000

.PHONY: install run test lint

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

## The embedded default: SQLite, django-q2's database broker, the web console and a worker, on 127.0.0.1.
run: install
	python manage.py migrate --noinput
	python manage.py demo_users --force
	python manage.py demo_setup
	@echo "Switchyard: http://127.0.0.1:$(SWITCHYARD_PORT)/  (Ctrl-C stops everything)"
	honcho --procfile Procfile.dev start

## The whole test suite, on PostgreSQL (TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/switchyard).
test: install
	pytest

lint: install
	ruff check .
	ruff format --check .
	python manage.py makemigrations --check --dry-run
