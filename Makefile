# The two commands of the README's quick start: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
PYTEST_ARGS ?=

.PHONY: setup run test lint benchmark clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt $(wildcard requirements-ray.txt)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@if [ -f requirements-ray.txt ] && [ "$${MMCRL_WITH_RAY:-1}" = "1" ]; then \
		$(PY) -m pip install --quiet -r requirements-ray.txt; fi
	touch $@

## Set up, store the example dataset once, and serve the app on http://localhost:$(PORT)
run: setup
	$(PY) -m mmcrl_core.first_run
	$(PY) -m streamlit run app.py --server.port $(PORT)

## Set up (including Debian's chromium for the browser tests when possible), lint, run every test
test: setup
	@bash scripts/ensure_chromium.sh
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .

benchmark: setup
	$(PY) -m mmcrl_core benchmark --suite quick --save-estimates --out models/benchmarks/quick
