# Entry points for a fresh machine: `make demo`, `make test` (the default) and
# `make test-matrix`. Every dependency set is declared once under requirements/
# (requirements.txt composes the default one); each venv re-installs only when
# one of the files it is built from changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ISOLATED := scripts/isolated_ros.sh
DEMO_OUT ?= runs/demo
# The runtime matrix: ROS 2 Jazzy wheels, no torch, on JetPack 6's Python (3.10)
# and JetPack 7.2's (3.12). Interpreters come from pyenv when it has them.
MATRIX_PYTHONS ?= 3.10 3.12
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
python_for = $(or $(lastword $(sort $(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python$(1)))),$(shell command -v python$(1)),$(error no Python $(1): install it (pyenv install $(1)) or set MATRIX_PYTHONS))
DEFAULT_REQS := requirements.txt requirements/runtime.txt requirements/train.txt requirements/test.txt \
                requirements/ros-kilted.txt requirements/typestubs.txt
MATRIX_REQS := requirements/matrix.txt requirements/runtime.txt requirements/test.txt requirements/ros-jazzy.txt \
               requirements/typestubs.txt
# Type stubs go beside site-packages, not into it (requirements/typestubs.txt says why).
install_stubs = $(1) -m pip install -q --no-deps --upgrade --target $(2)/typestubs -r requirements/typestubs.txt

.PHONY: all demo test test-matrix venv clean

all: test

$(STAMP): $(DEFAULT_REQS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(call install_stubs,$(PY),$(VENV))
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pyright -p pyrightconfig.json
	$(ISOLATED) $(PY) -m pytest -q

# The runtime and node tests (everything that does not need torch; tests/conftest.py
# deselects the rest and says which) on Jazzy + Python 3.10 and 3.12.
test-matrix: $(addprefix test-jazzy-py,$(MATRIX_PYTHONS))

.venv-jazzy-py%/.installed-stamp: $(MATRIX_REQS)
	$(call python_for,$*) -m venv .venv-jazzy-py$*
	.venv-jazzy-py$*/bin/python -m pip install -q --upgrade pip
	.venv-jazzy-py$*/bin/python -m pip install -q -r requirements/matrix.txt
	$(call install_stubs,.venv-jazzy-py$*/bin/python,.venv-jazzy-py$*)
	touch $@

test-jazzy-py%: .venv-jazzy-py%/.installed-stamp
	$(ISOLATED) .venv-jazzy-py$*/bin/python -m pytest -q -p no:cacheprovider

.PRECIOUS: .venv-jazzy-py%/.installed-stamp

demo: $(STAMP)
	$(ISOLATED) $(PY) -m training.demo --out $(DEMO_OUT)

clean:
	rm -rf runs .pytest_cache
