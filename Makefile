# netmetrics: see README.md. `sudo make run` to monitor, `make test` to test.
IFACE ?=
PORT ?= 8000
BIND ?= 127.0.0.1
PYTHON := .venv/bin/python

.PHONY: setup run test lint lock install uninstall central

setup:
	@bash scripts/setup.sh

run: setup
	@IFACE="$(IFACE)" PORT="$(PORT)" BIND="$(BIND)" bash scripts/run.sh

test: setup
	$(PYTHON) -m pytest

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

# Re-pin the whole dependency tree from pyproject.toml's direct pins (the project itself is not
# a package: it runs from the checkout).
lock:
	rm -rf var/lockenv && /usr/bin/python3 -m venv var/lockenv
	/usr/bin/python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
		print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))' > var/direct.txt
	var/lockenv/bin/pip install -q -r var/direct.txt
	var/lockenv/bin/pip freeze > requirements.lock
	rm -rf var/lockenv var/direct.txt

# The systemd services (README "Running as a service"); `make run` stays the way to try it.
install:
	@bash scripts/service.sh install

uninstall:
	@PURGE="$(PURGE)" bash scripts/service.sh uninstall

# The centre of a fleet (README "A fleet: the centre"): PostgreSQL and Redis on this host, the
# roles of the samplers and the web, and the lines to put on each host. ALLOW=CIDR[,CIDR] opens
# them to those networks (remembered; ALLOW=none closes them again).
central: setup
	@ALLOW="$(ALLOW)" CENTRAL_ADDRESS="$(CENTRAL_ADDRESS)" bash scripts/central.sh
