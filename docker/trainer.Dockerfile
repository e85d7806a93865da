# Trainer: ingestion, training, evaluation, export, the scheduled retraining job (ecgk retrain) and the demo
# (which serves the exported model and the dashboard, hence the service and dashboard requirements too).
#   --build-arg VARIANT=cpu   torch 2.13.0+cpu, onnxruntime (the default)        -> ecg-k/trainer:cpu
#   --build-arg VARIANT=cuda  torch 2.13.0 CUDA 13.0 build, onnxruntime-gpu       -> ecg-k/trainer:cuda
# torch is installed alone and first, then torchsort compiles against it without build isolation (g++; no nvcc
# in this image, so its CPU kernel only: on CUDA tensors the project falls back to torch.sort). See
# ../shared/reference/install.md sections 2-3. Build context: the repository root; see api.Dockerfile.
FROM python:3.11-slim-bookworm

ARG VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ECGK_HOME=/data \
    ECGK_ECG_STORE=/ecg-store

# g++ from the base image's Debian release, not pinned to a point version: those are replaced by security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,source=requirements/constraints.txt,target=/ctx/requirements/constraints.txt \
    --mount=type=bind,source=docker/install.sh,target=/ctx/docker/install.sh \
    sh /ctx/docker/install.sh torch "$VARIANT"
RUN --mount=type=bind,source=requirements,target=/ctx/requirements \
    --mount=type=bind,source=docker/install.sh,target=/ctx/docker/install.sh \
    sh /ctx/docker/install.sh requirements "$VARIANT" train service dashboard
RUN --mount=type=bind,target=/ctx,rw \
    sh /ctx/docker/install.sh project

USER 10001
WORKDIR /home/ecgk
ENTRYPOINT ["ecgk"]
CMD ["demo"]
