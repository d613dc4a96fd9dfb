# cnfkit: the two commands a newcomer needs are `make test` and `make reproduce`.
# Both create the environment first: a conda env in .conda/ when conda is installed (ENV=venv
# forces pip), else a .venv/ with pip (torch pinned to $(TORCH_VERSION); its CPU build is cached here).

SHELL := /bin/bash
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
ENV ?= $(if $(shell command -v conda 2>/dev/null),conda,venv)
ENV_DIR := $(if $(filter conda,$(ENV)),.conda,.venv)
PY := $(ENV_DIR)/bin/python
STAMP := $(ENV_DIR)/.cnfkit-installed
PROFILE ?=
DEVICE ?= auto
DRY_RUN ?=
# Offline mirror of the datasets: ../shared/data when it exists (CI), unless already set.
SHARED_DATA := $(abspath ../shared/data)
export CNFKIT_DATA_MIRROR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
export PYTHONHASHSEED := 0
# Idle OpenMP threads sleep instead of spinning, so a busy machine slows a run in proportion (cnfkit/_runtime.py).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: help env test test-fast reproduce verify smoke notebooks lab book bench bench-throughput bench-load bench-lanes bench-learning drive-beta gpu-check data clean

help:
	@echo "make test                 pytest + nbval on the committed notebooks (creates the environment)"
	@echo "make reproduce [PROFILE=smoke|quick|full] [DEVICE=auto|cpu|cuda:N] [JOBS=N]   run every notebook, write results/<profile>/"
	@echo "make verify [PROFILE=quick] [ONLY=02]  rerun into build/verify/ and compare with the committed results"
	@echo "make smoke                reproduce with PROFILE=smoke"
	@echo "make notebooks            re-execute the committed notebooks in place (smoke outputs, what nbval checks)"
	@echo "make lab                  JupyterLab on notebooks/"
	@echo "make book [PROFILE=quick] the static site: README, executed notebooks, guide, API reference (build/book/<profile>/)"
	@echo "make bench                every experiment and phase against the machine's FLOP limit (benchmarks/phases.py)"
	@echo "make bench-throughput     flow-only train/sample throughput, eager and compiled (benchmarks/throughput.py)"
	@echo "make bench-load           one train step alone and beside 2 busy processes, per thread/wait setting"
	@echo "make bench-lanes          one 2-thread process against two 1-thread ones: what JOBS=2 buys (benchmarks/lanes.py)"
	@echo "make bench-learning       held-out metric against CPU-seconds: SR, MNIST, DRIVE variants (~45 min)"
	@echo "make drive-beta           which reading of eq. 9's beta gives the paper's factored bits/dim (DRIVE, ~7 min)"
	@echo "make gpu-check [DEVICE=cpu DRY_RUN=1]  the one short GPU check (benchmarks/gpu_check.py, <= 8 min)"
	@echo "make data                 verify / download the datasets (python -m cnfkit.data fetch)"
	@echo "make clean                remove the environment, caches and smoke results"

env: $(STAMP)

$(STAMP): pyproject.toml environment.yml
ifeq ($(ENV),conda)
	conda env create --yes --prefix $(ENV_DIR) --file environment.yml
else
	test -x $(PY) || $(PYTHON) -m venv $(ENV_DIR)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e '.[dev]'
endif
	$(PY) -m ipykernel install --prefix $(ENV_DIR) --name python3 --display-name "Python 3 (cnfkit)" >/dev/null
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check cnfkit tests benchmarks examples scripts notebooks/conftest.py
	$(PY) -m ruff format --check cnfkit tests benchmarks examples scripts notebooks/conftest.py
	$(PY) -m mypy cnfkit
	@mkdir -p build/test-reports
	$(PY) -m pytest -q tests --junitxml=build/test-reports/tests.xml
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
		echo "nbval: re-running the committed notebooks (smoke outputs)"; \
		$(PY) -m pytest -q --nbval -p no:cacheprovider --nbval-current-env notebooks/ \
			--junitxml=build/test-reports/nbval.xml ; \
	fi
	$(MAKE) --no-print-directory gpu-check DEVICE=cpu DRY_RUN=1
	@$(PY) scripts/skip_summary.py build/test-reports/tests.xml build/test-reports/nbval.xml

test-fast: $(STAMP)
	$(PY) -m pytest -q tests -x

reproduce: $(STAMP)
	$(PY) -m cnfkit.repro.reproduce $(if $(PROFILE),--profile $(PROFILE),) --device $(DEVICE) $(if $(DRY_RUN),--dry-run,) \
		$(if $(JOBS),--jobs $(JOBS),)

verify: $(STAMP)
	$(PY) -m cnfkit.repro.verify --profile $(or $(PROFILE),quick) $(if $(ONLY),--only $(ONLY),) \
		--device $(if $(filter auto,$(DEVICE)),cpu,$(DEVICE))

smoke:
	$(MAKE) reproduce PROFILE=smoke

notebooks: $(STAMP)
	$(PY) -m cnfkit.repro.reproduce --refresh-committed

lab: $(STAMP)
	$(ENV_DIR)/bin/jupyter lab notebooks/

book: $(STAMP)
	$(PY) docs/build_book.py --profile $(or $(PROFILE),quick)

bench: $(STAMP)
	$(PY) benchmarks/phases.py --out results/benchmarks

bench-throughput: $(STAMP)
	$(PY) benchmarks/throughput.py --out results/benchmarks

bench-load: $(STAMP)
	$(PY) benchmarks/under_load.py --out results/benchmarks

bench-lanes: $(STAMP)
	$(PY) benchmarks/lanes.py --out results/benchmarks

bench-learning: $(STAMP)
	$(PY) benchmarks/learning_per_second.py sr --variants paper residual --steps 300 --every 50 --out results/benchmarks
	$(PY) benchmarks/learning_per_second.py sr --variants residual cosine --steps 300 --every 50 --tag schedule --out results/benchmarks
	$(PY) benchmarks/learning_per_second.py mnist --variants constant cosine --every 1172 --n-eval 10000 --out results/benchmarks
	$(PY) benchmarks/learning_per_second.py mnist --variants ae4 --every 1172 --n-eval 10000 --tag ae4 --out results/benchmarks & a=$$!; \
	$(PY) benchmarks/learning_per_second.py drive --variants constant --steps 1600 --every 400 --n-eval 20 --out results/benchmarks & b=$$!; \
	wait $$a && wait $$b

drive-beta: $(STAMP)
	$(PY) scripts/drive_beta_reading.py --out results/studies

# on a GPU: results/benchmarks/phases_cuda.{json,md} and gpu_check_cuda.md; DRY_RUN=1: smoke sizes into build/
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py --device $(if $(filter auto,$(DEVICE)),cuda,$(DEVICE)) \
		$(if $(DRY_RUN),--dry-run --out build/gpu-check,--out results/benchmarks)

data: $(STAMP)
	$(PY) -m cnfkit.data fetch

clean:
	rm -rf .venv .conda .pytest_cache results/smoke
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
