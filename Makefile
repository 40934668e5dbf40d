# Set-up and entry points. `make demo` and `make test` each create .venv and install WordNet 3.0
# when missing, so either works first on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint bench bench-download bench-noise bench-train bench-crowd clean-runs labelstudio browser

setup: $(STAMP)
	$(BIN)/curate setup

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch==2.14.1 / torchvision==0.29.1 are pinned in pyproject.toml.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/curate run pipelines/demo.yaml

# Every test runs: Label Studio and Debian's Chromium are installed first, and a test that would need them
# fails rather than skips (CURATE_REQUIRE_LABELSTUDIO=1).
test: setup labelstudio browser
	CURATE_REQUIRE_LABELSTUDIO=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check curate tests benchmarks scripts

bench: setup
	$(BIN)/python benchmarks/bench_embed.py

# these three read Imagenette and MobileNetV2 weights from ../shared (see the README)
bench-noise: setup
	$(BIN)/python benchmarks/noise.py

bench-train: setup
	$(BIN)/python benchmarks/train.py --threads 1

bench-crowd: setup
	$(BIN)/python benchmarks/crowd.py

# img2dataset, the baseline of the download benchmark, lives in its own environment (not a dependency).
.venv-bench/bin/img2dataset:
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install --disable-pip-version-check -q img2dataset

bench-download: setup .venv-bench/bin/img2dataset
	$(BIN)/python benchmarks/download.py
	$(BIN)/python benchmarks/download.py --photos web -n 2000

# Label Studio, where annotators answer (`curate labelstudio serve RUN_DIR`), lives in its own environment:
# its dependency pins clash with ours; curate talks to it over HTTP only. tests/test_labelstudio.py starts it.
LS_VERSION := 1.23.2
LS_VENV    := .venv-labelstudio
LS_STAMP   := $(LS_VENV)/.installed-$(LS_VERSION)

labelstudio: $(LS_STAMP)

$(LS_STAMP):
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install --disable-pip-version-check -q label-studio==$(LS_VERSION)
	touch $@

# Debian's Chromium, which the annotator test drives headless through Playwright (no browser download).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

clean-runs:
	rm -rf runs
