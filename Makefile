# pulkit: the two commands are `make reproduce` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
ARGS ?=
# Keep Jupyter / IPython / matplotlib state inside the project, not in $HOME.
export JUPYTER_RUNTIME_DIR ?= $(CURDIR)/.cache/jupyter-runtime
export IPYTHONDIR ?= $(CURDIR)/.cache/ipython
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib
export TORCHINDUCTOR_CACHE_DIR ?= $(CURDIR)/.cache/inductor
export PYTHONHASHSEED ?= 0

.PHONY: venv test unit smoke reproduce figures lab bench clean-results

# Create the environment on first use; re-install when pyproject.toml or this file changes.
# The vot extra pulls opencv-python (GUI build, needs libGL) beside opencv-python-headless; both own the
# `cv2` package and the one installed last wins, so the headless files are put back on top: pulkit then
# imports on machines without libGL (tests/test_environment.py checks the build).
$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,vot]'
	$(PY) -m pip install -q --force-reinstall --no-deps \
	  "opencv-python-headless==$$($(PY) -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')"
	touch $@

venv: $(VENV)/.installed

# Unit tests, then the papermill smoke run of every notebook (into its own results folder).
test: venv
	$(PY) -m pytest -q tests
	$(PY) -m pulkit reproduce --profile smoke --force $(ARGS)

unit: venv
	$(PY) -m pytest -q tests

smoke: venv
	$(PY) -m pulkit reproduce --profile smoke $(ARGS)

# The main job: every notebook in order through papermill (PROFILE=smoke for minutes).
reproduce: venv
	$(PY) -m pulkit reproduce --profile $(PROFILE) $(ARGS)

figures: venv
	$(PY) -m pulkit figures --profile $(PROFILE)

lab: venv
	$(PY) -m ipykernel install --sys-prefix --name pulkit --display-name "pulkit (.venv)" >/dev/null
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

bench: venv
	$(PY) -m pulkit.tools.bench tracker
	$(PY) -m pulkit.tools.bench ahm
	$(PY) -m pulkit.tools.bench train

clean-results:
	rm -rf results/$(PROFILE) runs/$(PROFILE) checkpoints/$(PROFILE)
