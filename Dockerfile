# syntax=docker/dockerfile:1
# BoneHub worker image: the Dataflow custom container (Beam boot entrypoint, CUDA base) that also
# runs the `bonehub` command locally. Build, push and run: docker/README.md.
#
# Versions that must agree (tests/cloud/test_dockerfile.py checks them):
# - BEAM_VERSION: the apache-beam the project resolves (.venv); the boot program and the installed
#   SDK must be the same release, and the image's Python (3.11) must match the launching Python.
# - torch: constraints.txt pins torch==2.13.0 for the whole install, as `make setup` does. On PyPI
#   that version is the CUDA 13.0 build (its CUDA libraries come as nvidia-* wheels, so the base image
#   only needs the CUDA 13 user-space basics and the driver mount paths). TORCH_INDEX_URL picks
#   another build of the same version (e.g. a PyTorch cuXYZ index for older drivers, or
#   https://download.pytorch.org/whl/cpu); set CUDA_VERSION to match.
ARG BEAM_VERSION=2.77.0
ARG CUDA_VERSION=13.0.2
ARG UV_VERSION=0.13.9
ARG FLEX_LAUNCHER_TAG=20230622_RC00

FROM apache/beam_python3.11_sdk:${BEAM_VERSION} AS beam_sdk
FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:${FLEX_LAUNCHER_TAG} AS flex_launcher

# ---- build: Python 3.11 (Ubuntu 24.04 ships 3.12) and a venv with the project and its pinned dependencies.
FROM nvidia/cuda:${CUDA_VERSION}-base-ubuntu24.04 AS build
ARG BEAM_VERSION
ARG TORCH_INDEX_URL=""
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=uv /uv /usr/local/bin/uv
RUN uv python install 3.11 && uv venv --seed --python 3.11 /opt/venv
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY labels/ labels/
COPY dicom_io/ dicom_io/
COPY models/ models/
COPY qc/ qc/
COPY results/ results/
COPY review/ review/
COPY dataset/ dataset/
COPY pipeline/ pipeline/
COPY sr_templates/ sr_templates/
# The same pins as `make setup`: pyproject's ranges plus constraints.txt; apache-beam is held to the
# boot program's release, with its [gcp] extra (job submission from the image and the flex template
# launcher need it, as Beam's own SDK images have it; it only adds packages to the resolved set).
# No torchvision shim (models/torch_compat.py): PyPI's torchvision matches this torch, and the check
# below fails the build if its compiled ops do not load.
RUN /opt/venv/bin/pip install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
        -c constraints.txt "apache-beam[gcp]==${BEAM_VERSION}" . \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/python -c "import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)"

# ---- worker: the runtime only (no uv, no source tree, no build caches).
FROM nvidia/cuda:${CUDA_VERSION}-base-ubuntu24.04 AS worker
ARG BONEHUB_UID=10001
# ca-certificates: s5cmd (IDC downloads) is a Go binary and reads the system trust store. Not pinned
# (DL3008): Ubuntu replaces its version with every trust-store update and drops the old one from the
# archive, so a pin breaks the build, and the newest trust store is the one wanted.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid "${BONEHUB_UID}" bonehub \
    && useradd -l --uid "${BONEHUB_UID}" --gid bonehub --create-home bonehub \
    && install -d -o bonehub -g bonehub /opt/bonehub/totalsegmentator /opt/bonehub/weights/totalsegmentator \
        /opt/bonehub/weights/moose /opt/bonehub/weights/nnunet

COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv
COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam
COPY --from=flex_launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher
# scripts/, not docker/: with /opt/bonehub as the working directory a docker/ folder would shadow a `docker` package.
COPY docker/flex_main.py docker/bake_weights.py /opt/bonehub/scripts/
COPY sample/ /opt/bonehub/sample/

# RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT: the boot program uses this venv instead of creating one under
# /opt/apache (which the non-root user cannot write). Weights: TOTALSEG_WEIGHTS_PATH and nnUNet_results
# are the mount points (or where BAKE_WEIGHTS puts them); TOTALSEG_HOME_DIR holds TotalSegmentator's
# config.json, which must stay writable because the adapter re-asserts send_usage_stats=false on load.
ENV PATH=/opt/venv/bin:${PATH} \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1 \
    TOTALSEG_HOME_DIR=/opt/bonehub/totalsegmentator \
    TOTALSEG_WEIGHTS_PATH=/opt/bonehub/weights/totalsegmentator \
    nnUNet_results=/opt/bonehub/weights/nnunet \
    FLEX_TEMPLATE_PYTHON_PY_FILE=/opt/bonehub/scripts/flex_main.py
WORKDIR /opt/bonehub
USER ${BONEHUB_UID}:${BONEHUB_UID}

# Telemetry off: TotalSegmentator POSTs usage statistics unless its config.json says otherwise.
RUN python -c "from models.totalsegmentator import _disable_usage_stats; _disable_usage_stats()"

# Weights are not in the image unless asked for, e.g. --build-arg BAKE_WEIGHTS="totalsegmentator:total_fast moose:clin_ct_ribs"
# (needs network at build time; licensed models are refused). Otherwise mount them at run time.
ARG BAKE_WEIGHTS=""
RUN python /opt/bonehub/scripts/bake_weights.py --dest /opt/bonehub/weights "${BAKE_WEIGHTS}"

ENTRYPOINT ["/opt/apache/beam/boot"]
