# Ancho: `make run` runs the example end to end; `make test` runs ruff, mypy and the suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
WHEELS := .cache/wheels
EXAMPLE ?= examples/pi

.PHONY: install install-test run test lint typecheck pytest bench clean cassandra cassandra-stop docker image chromium

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel

$(WHEELS)/.http-parser: | $(VENV)/bin/python
	bash scripts/build-http-parser.sh $(PY) $(WHEELS)
	touch $@

# Every extra (server, spark, ...): a developer runs all of it. The executor image
# installs only the core (docker/executor/Dockerfile).
$(VENV)/.installed: setup.cfg pyproject.toml $(WHEELS)/.http-parser
	$(PY) -m pip install --quiet --find-links $(WHEELS) -e '.[all]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet --find-links $(WHEELS) -e '.[all,test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(VENV)/bin/ancho run $(EXAMPLE)

lint: install-test
	$(VENV)/bin/ruff check ancho scheduler executor tests bench examples scripts
	$(VENV)/bin/ruff format --check ancho scheduler executor tests bench examples scripts

typecheck: install-test
	$(VENV)/bin/mypy

# A real single-node Cassandra 5.0 from Maven Central (idempotent): .ancho/cassandra.url
cassandra: install
	$(PY) scripts/cassandra_node.py start

cassandra-stop:
	$(PY) scripts/cassandra_node.py stop

# A running Docker engine (Debian's docker.io, installed if missing), idempotent.
docker:
	bash scripts/docker_engine.sh

# Headless Chromium (Debian's chromium, installed if missing), idempotent: `ancho report --pdf`.
chromium:
	bash scripts/install-chromium.sh

# ancho/base (debootstrap + docker import, no registry) and ancho/executor:<version>.
image: install docker
	bash docker/build-images.sh

pytest: install-test cassandra image chromium
	$(VENV)/bin/pytest

test: lint typecheck pytest

bench: install cassandra image
	$(PY) bench/run_bench.py
	$(PY) bench/cassandra_bench.py
	$(PY) bench/docker_bench.py
	$(PY) bench/server_bench.py

clean:
	rm -rf $(VENV) .ancho build *.egg-info
