# Inference API: FastAPI + ONNX Runtime, no torch (requirements/service.txt only; the service never imports it).
#   --build-arg VARIANT=cpu   onnxruntime (the default)                        -> ecg-k/api:cpu
#   --build-arg VARIANT=cuda  onnxruntime-gpu with the CUDA 13 / cuDNN 9 wheels -> ecg-k/api:cuda
# The GPU driver comes from the host at run time (NVIDIA Container Toolkit; docker-compose.gpu.yml).
# Build context: the repository root (its .dockerignore is an allowlist). RUN --mount needs BuildKit, the
# default builder since Docker 23. The shared install steps are in docker/install.sh.
FROM python:3.11-slim-bookworm

ARG VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ECGK_HOME=/data \
    ECGK_ECG_STORE=/ecg-store

RUN --mount=type=bind,source=requirements,target=/ctx/requirements \
    --mount=type=bind,source=docker/install.sh,target=/ctx/docker/install.sh \
    sh /ctx/docker/install.sh requirements "$VARIANT" service
RUN --mount=type=bind,target=/ctx,rw \
    sh /ctx/docker/install.sh project

USER 10001
WORKDIR /home/ecgk
EXPOSE 8000
ENTRYPOINT ["ecgk"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
