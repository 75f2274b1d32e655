# Set up, test and run the pipeline. Everything runs offline.
VENV    ?= .venv
PY      := $(VENV)/bin/python
SYSPY   ?= python3
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export WANDB_MODE ?= offline
export WANDB_DIR := $(CURDIR)/.cache/wandb
export WANDB_CACHE_DIR := $(CURDIR)/.cache/wandb-cache
export WANDB_DATA_DIR := $(CURDIR)/.cache/wandb-data
export WANDB_CONFIG_DIR := $(CURDIR)/.cache/wandb-config
export NUMBA_CACHE_DIR := $(CURDIR)/.cache/numba
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install browser test run smoke data params pull plots bench sweep compare clean

install: $(VENV)/.installed browser

browser:  # Debian's chromium, for the report's headless-browser test
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: install Debian's chromium to run the report browser test"

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(SYSPY) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0 -e '.[test]'
	mkdir -p $(WANDB_DIR) $(WANDB_CACHE_DIR) $(WANDB_DATA_DIR) $(WANDB_CONFIG_DIR) $(NUMBA_CACHE_DIR) $(MPLCONFIGDIR)
	touch $@

test: install
	$(PY) -m pytest

data: install
	$(PY) -m emergence raw

params: install  # params.yaml = conf/config.yaml composed with conf/profile/default.yaml
	$(PY) -m emergence profile --name default --out .

plots: install  # dvc.yaml's plots as SVG in dvc_plots/index.html, drawn offline (dvc plots show needs a CDN)
	$(PY) -m emergence plots

pull: install  # a tagged run's outputs from the DVC remote (named, with the fix, when it is missing)
	$(PY) -m emergence remote && dvc pull

run: data
	EMERGENCE_RUN_GROUP=run-$$(date +%Y%m%d-%H%M%S) dvc repro

smoke: data
	$(PY) -m emergence profile --name smoke --out build/smoke
	cd build/smoke && EMERGENCE_RUN_GROUP=smoke-$$(date +%Y%m%d-%H%M%S) dvc repro

compare: install
	$(PY) -m emergence compare

bench: install
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

SWEEP        ?= conf/sweeps/sgld.yaml
SWEEP_TRIALS ?= 8
SWEEP_ID     ?=
# online: stop at once without a key, and when `wandb sweep` printed no sweep id; with SWEEP_ID
# (entity/project/id) join that sweep instead of creating one: one agent per machine, one sweep;
# offline: the best setting goes to artifacts/sweeps/best.yaml, tracked by DVC (best.yaml.dvc)
sweep: install
	@if [ "$$WANDB_MODE" = online ]; then \
	  $(PY) -c 'from emergence.tracking.sweep import require_api_key; require_api_key()' || exit 1; \
	  id="$(SWEEP_ID)"; \
	  if [ -z "$$id" ]; then \
	    out=$$(wandb sweep --project emergence $(SWEEP) 2>&1); echo "$$out"; \
	    id=$$(echo "$$out" | sed -n 's/.*wandb agent \(.*\)$$/\1/p' | tail -1); \
	    [ -n "$$id" ] || { echo "error: no sweep id in the output of \`wandb sweep\` above" >&2; exit 1; }; \
	    echo "other machines join with: make sweep WANDB_MODE=online SWEEP_ID=$$id"; \
	  fi; \
	  wandb agent --count $(SWEEP_TRIALS) $$id; \
	else \
	  $(PY) -m emergence sweep --config $(SWEEP) --trials $(SWEEP_TRIALS) --out artifacts/sweeps && \
	  dvc add -q artifacts/sweeps/best.yaml; \
	fi

clean:
	rm -rf artifacts build .cache wandb
