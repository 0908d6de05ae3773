# netmetrics: see README.md. `sudo make run` to monitor, `make test` to test.
IFACE ?=
PORT ?= 8000
PYTHON := .venv/bin/python

.PHONY: setup run test lint lock

setup:
	@bash scripts/setup.sh

run: setup
	@IFACE="$(IFACE)" PORT="$(PORT)" bash scripts/run.sh

test: setup
	$(PYTHON) -m pytest

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# Re-pin the whole dependency tree from pyproject.toml's direct pins.
lock:
	rm -rf var/lockenv && /usr/bin/python3 -m venv var/lockenv
	var/lockenv/bin/pip install -q '.[dev]'
	var/lockenv/bin/pip freeze --exclude netmetrics > requirements.lock
	rm -rf var/lockenv
