# gtcdemo: `make demo` runs the workbook on the local graph; `make test` runs every test. Both set up what they need.
PYTHON ?= python3
VENV   ?= .venv
ENV    ?= dev
TARGET ?= local
OUT    ?= out
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.gtcdemo-installed
RELEASES := $(VENV)/.gtcdemo-releases

.PHONY: envtest setup demo test unit lint notebooks up down status lab deploy-dynamo test-inference demo-status preflight

setup: $(STAMP) $(RELEASES)

# Reinstalled whenever pyproject.toml (the single source of dependencies) changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[all]"
	$(BIN)/python -m gtcdemo.install
	touch $(STAMP)

# The Dynamo release each DGD's images name, in its own venv: checked again when a manifest changes (a new image tag
# installs that release; nothing to do when it is there).
$(RELEASES): $(STAMP) $(wildcard manifests/*/*.yaml)
	$(BIN)/python -m gtcdemo.install --releases
	touch $(RELEASES)

demo: $(STAMP)
	$(BIN)/gtcdemo demo --env $(ENV) --target $(TARGET) --out $(OUT)

# kube-apiserver for the cluster tests: built once from Debian's source package and cached (~7 min the first time).
envtest:
	bash tests/envtest/build-kube-apiserver.sh >/dev/null

test: $(STAMP) $(RELEASES) envtest
	$(BIN)/python -m pytest tests --nbval-lax --nbval-current-env notebooks

# The fast tier (well under a minute): tests/unit and the tests marked `unit` elsewhere, which run in pytest's own
# process: no graph, kube-apiserver, browser, notebook kernel or CLI subprocess.
unit: $(STAMP) $(RELEASES)
	$(BIN)/python -m pytest tests -m unit

lint: $(STAMP)
	$(BIN)/ruff check gtcdemo tests benchmarks scripts notebooks

# Each notebook's source is notebooks/NAME.py (jupytext percent format, paired by notebooks/jupytext.toml): this
# rewrites the inputs of NAME.ipynb from it, keeping the .ipynb's metadata, cell ids and stored outputs (the expected
# outputs of the `# NBVAL_CHECK_OUTPUT` cells). conftest.py is nbval's, not a notebook.
NOTEBOOK_SOURCES := $(filter-out notebooks/conftest.py,$(wildcard notebooks/*.py))
notebooks: $(STAMP)
	$(BIN)/jupytext --to ipynb --update $(NOTEBOOK_SOURCES)

up down status: $(STAMP)
	$(BIN)/gtcdemo $@ --env $(ENV) --target $(TARGET)

# JupyterLab for the walkthrough, configured by the project's jupyter/ folder (not ~/.jupyter): loopback only, runs
# as root, no autosave into the tracked notebooks, no news pop-up; the kernel "Python 3" is .venv's. Its user
# settings and workspaces go to jupyter/lab/ (ignored by git). LAB_ARGS adds options (the browser test's port).
LAB_ARGS ?=
lab: $(STAMP)
	JUPYTER_CONFIG_DIR=$(CURDIR)/jupyter $(BIN)/jupyter lab --notebook-dir notebooks $(LAB_ARGS)

# The cluster commands by the names a deployment runbook calls them (deploy-dynamo, test-inference, demo-status,
# preflight), as thin wrappers over the package. CLUSTER_TARGET=local rehearses them on this machine.
CLUSTER_TARGET ?= cluster
deploy-dynamo: $(STAMP)
	$(BIN)/gtcdemo up --env $(ENV) --target $(CLUSTER_TARGET)

test-inference: $(STAMP)
	$(BIN)/gtcdemo test-inference --env $(ENV) --target $(CLUSTER_TARGET)

demo-status: $(STAMP)
	$(BIN)/gtcdemo demo-status --env $(ENV) --target $(CLUSTER_TARGET)

preflight: $(STAMP)
	$(BIN)/gtcdemo preflight --env $(ENV) --target $(CLUSTER_TARGET)
