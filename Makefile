# The two commands a newcomer runs: `make demo` and `make test`. Both create .venv when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.lmforge-installed
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1

.PHONY: setup demo data lint test test-fast test-load compile bench bench-quick bench-quality bench-data clean

setup: $(STAMP)

# torch first and pinned: it takes the local CPU wheel; anything that pulls torch unpinned would
# download a multi-GB CUDA build. Then the project, with every version fixed by constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch $@

data: setup
	$(VENV)/bin/lmforge data demo

demo: data
	$(VENV)/bin/lmforge run --config demo

# Pretraining speed against the Hugging Face recipes, same process, same corpus (~15 min on 2 cores;
# bench-quick ~3 min). Writes bench/results/latest.{md,json,png}.
bench: data
	$(PY) -m bench

bench-quick: data
	$(PY) -m bench --quick

# Where pretraining pays: accuracy of pretrained vs random-init vs TF-IDF classifiers on the demo set
# and the extra sets of bench/quality_data.py, per pretraining budget and recipe row (hours on 2
# cores; stage outputs cached in local_outputs/bench-quality). Writes bench/results/quality-latest.*.
# ARGS passes options, e.g. make bench-quality ARGS="--quick" or ARGS="--datasets demo,bbc-news --budgets 0,600".
bench-quality: data
	$(PY) -m bench.quality $(ARGS)

# The data half (ingest -> clean_tokenize -> validate) on generated 1 GB and 4 GB corpora in
# local_outputs/data-scale: peak RSS and seconds per stage (~30 min per GB on 2 shared cores).
# Writes bench/results/data-scale.{md,json}. ARGS="--sizes 1" for 1 GB only.
bench-data: data
	nice -n 19 $(PY) -m bench.data_scale $(ARGS)

# Two workers on the two cores (pytest-xdist; worksteal evens out the few whole-pipeline tests), one
# torch thread each: two processes of two threads on two cores spin at OpenMP barriers.
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist worksteal

# The linter first: seconds, and it names the line (rules and why in pyproject.toml's [tool.ruff]).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PYTEST) -m "not load"

# 8 whole tiny runs at once against one real MLflow server, registering one model: every version
# complete and a strict alias history; prints the reliability table's figures (many minutes on 2 cores).
test-load: setup
	$(PY) -m pytest -q -s -m load tests/local/test_load.py

test-fast: lint
	$(PYTEST) -m "not slow and not network and not load"

compile: setup
	$(VENV)/bin/lmforge compile --output build/lmforge-pipeline.yaml

clean:
	rm -rf local_outputs build .pytest_cache
