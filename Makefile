# mumo: `make demo` (set-up + the main job) and `make test` (set-up + the fast suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all lint format bench bench-speed bench-quality clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,ray]"
	@# espeak-ng speaks builtin:shapes-speech and the quality suite's digits: installed where we may (Debian, root)
	@command -v espeak-ng >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -q espeak-ng >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && \
	    apt-get install -y -q espeak-ng >/dev/null 2>&1; }; }; } || \
	  echo "note: espeak-ng is not installed (apt-get install -y espeak-ng): speech data cannot be made, its tests skip"
	@# chromium drives the web page's browser test (Playwright with Debian's chromium, no browser download)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && \
	    apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "note: chromium is not installed (apt-get install -y chromium): the web page's browser test skips"
	touch $(STAMP)

demo: install
	$(BIN)/mumo demo

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

test-all: lint
	$(BIN)/python -m pytest -m "slow or not slow"

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# Speed: `mumo bench` (about 8 min) writes benchmarks/results/bench.json and its table into BENCHMARKS.md.
# Quality: each script prints a table, writes benchmarks/results/*.json and exits 1 when its goal is
# missed (`-` lets the others run); over an hour in all.
bench: install
	$(BIN)/mumo bench --json benchmarks/results/bench.json --markdown BENCHMARKS.md
	-$(BIN)/python -m benchmarks.baselines
	-$(BIN)/python -m benchmarks.feature_cache
	-$(BIN)/python -m benchmarks.pretrain_finetune
	-$(BIN)/python -m benchmarks.retrieval
	-$(BIN)/python -m benchmarks.interaction
	-$(BIN)/python -m benchmarks.generation
	-$(BIN)/python -m benchmarks.speech
	-$(BIN)/python -m benchmarks.image_generation
	-$(BIN)/python -m benchmarks.latent_cvae
	-$(BIN)/python -m benchmarks.streaming --in-memory
	-$(BIN)/python -m benchmarks.scaling

bench-speed: install
	$(BIN)/mumo bench --json benchmarks/results/bench.json --markdown BENCHMARKS.md

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache

# Quality suite: six small multimodal datasets, baselines and default mumo in one table (benchmarks/quality).
bench-quality: install
	@command -v espeak-ng >/dev/null || { echo "bench-quality needs espeak-ng: apt-get install -y espeak-ng"; exit 1; }
	$(BIN)/python -m benchmarks.quality --markdown BENCHMARKS.md
