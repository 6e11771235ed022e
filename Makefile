# pulkit: the two commands are `make reproduce` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
ARGS ?=
NB ?=
# Flags for `jupyter lab` (make lab, make explore), read by pulkit/tools/lab.py: LAB_ARGS="--ip=0.0.0.0 --port=8889".
export LAB_ARGS ?=
# Keep Jupyter / IPython / matplotlib state inside the project, not in $HOME.
export JUPYTER_RUNTIME_DIR ?= $(CURDIR)/.cache/jupyter-runtime
export IPYTHONDIR ?= $(CURDIR)/.cache/ipython
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib
export TORCHINDUCTOR_CACHE_DIR ?= $(CURDIR)/.cache/inductor
export PYTHONHASHSEED ?= 0

.PHONY: venv test unit smoke reproduce figures lab explore test-browser bench device-check paper-dryrun clean-results

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

# JupyterLab on the project, opened at notebooks/, with the kernelspec "pulkit (.venv)" installed; prints the URL with
# its token. As root it adds --allow-root, without a display --no-browser; LAB_ARGS adds any other flag.
lab: venv
	$(PY) -m pulkit.tools.lab

# A copy of notebook NB with INTERACTIVE = True and the run's parameters, in runs/<run>/explore/, opened in
# JupyterLab: make explore NB=05 PROFILE=smoke ARGS="-p SEED 1" (ARGS=--no-lab: only write it).
explore: venv
	@test -n "$(NB)" || { echo "make explore: name the notebook, e.g. make explore NB=05" >&2; exit 2; }
	$(PY) -m pulkit explore $(NB) --profile $(PROFILE) $(ARGS)

# The real-browser test alone: JupyterLab and headless Chromium (Debian's chromium and chromium-driver) via selenium.
test-browser: venv
	RUN_BROWSER_TEST=1 $(PY) -m pytest -q tests/test_browser.py

bench: venv
	$(PY) -m pulkit.tools.bench tracker
	$(PY) -m pulkit.tools.bench ahm
	$(PY) -m pulkit.tools.bench train

# On a CUDA machine: the smoke profile, the tracker and training benchmarks (FULL=1: also the gpu profile) on
# cuda, into DEVICE_CHECK_OUT, summarised in its summary.json (pulkit/tools/device_check.py); exit 3 without CUDA.
DEVICE_CHECK_OUT ?= runs/device-check
device-check: venv
	$(PY) -m pulkit.tools.device_check --out $(DEVICE_CHECK_OUT) $(if $(filter 1,$(FULL)),--full)

# The paper profile's code paths on generated GOT-10k / VID / OTB / VOT at real resolutions: datasets, `pulkit
# prepare got10k|vid`, then `pulkit reproduce --profile paper-dryrun --force`, all in a temporary folder
# (kept, with its path printed, when a step fails; OUT=dir keeps it anyway).
paper-dryrun: venv
	$(PY) -m pulkit.tools.paper_dryrun $(if $(OUT),--out $(OUT)) $(ARGS)

clean-results:
	rm -rf results/$(PROFILE) runs/$(PROFILE) checkpoints/$(PROFILE)
