# Two entry points for a fresh machine: `make demo` and `make test`.
# Both bootstrap .venv from requirements.txt (the one place dependencies are
# declared) and re-install only when that file changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ISOLATED := scripts/isolated_ros.sh
DEMO_OUT ?= runs/demo

.PHONY: all demo test venv clean

all: test

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(ISOLATED) $(PY) -m pytest -q

demo: $(STAMP)
	$(ISOLATED) $(PY) -m training.demo --out $(DEMO_OUT)

clean:
	rm -rf runs .pytest_cache
