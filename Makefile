# `make test` and `make demo` each create .venv when missing and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint bench notebook clean system-packages

# Debian packages the tests need (redis-server for the Redis Cluster tests; chromium and
# chromium-driver for the dashboard's browser tests), installed when missing and possible (root
# with apt-get, as on CI); elsewhere those tests skip and say why.
# The tests start their own servers: the system service the package may start is stopped.
system-packages:
	@if ! command -v redis-server >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
			pkill -u redis -x redis-server || true; \
		else \
			echo "note: redis-server missing and not installable here: the Redis Cluster tests will skip"; \
		fi; \
	fi
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
				|| echo "note: chromium and chromium-driver could not be installed: the dashboard's browser tests will skip"; \
		else \
			echo "note: chromium or chromium-driver missing and not installable here: the dashboard's browser tests will skip"; \
		fi; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Test oracle: GrowthBook's statistics package, which the CUPED and Bayesian tests must equal.
# Its metadata pins pandas<2 and numpy<2 (so it cannot be a resolvable dev extra next to the
# platform's pandas 2), but the modules the tests import run on pandas 2 and numpy 2, and their
# remaining requirements (scipy, pydantic, packaging, nbformat) come with the dev extra: install
# it without its pins.
ORACLES := gbstats==0.8.0

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps '$(ORACLES)'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) system-packages
	$(BIN)/ruff check .
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/abtest demo

notebook: $(STAMP)
	$(BIN)/python -m abtest.devtools.notebook notebooks/experiment_analysis.ipynb reports/experiment_analysis.ipynb

bench: $(STAMP) system-packages
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .abtest reports .pytest_cache .ruff_cache
