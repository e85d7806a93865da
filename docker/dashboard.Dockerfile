# Review and audit dashboard (Streamlit): reads and writes the database through ecg_k; no torch and no ONNX
# Runtime (requirements/dashboard.txt: the domain core, the database layer and Streamlit).
# Streamlit listens on the container's interface (the compose file publishes it on the host's loopback only)
# and sends no usage statistics. Build context: the repository root; see api.Dockerfile for the conventions.
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ECGK_HOME=/data \
    ECGK_ECG_STORE=/ecg-store \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_HEADLESS=true

RUN --mount=type=bind,source=requirements,target=/ctx/requirements \
    --mount=type=bind,source=docker/install.sh,target=/ctx/docker/install.sh \
    sh /ctx/docker/install.sh requirements cpu dashboard
RUN --mount=type=bind,target=/ctx,rw \
    sh /ctx/docker/install.sh project

USER 10001
WORKDIR /home/ecgk
EXPOSE 8501
ENTRYPOINT ["ecgk"]
CMD ["dashboard", "--host", "0.0.0.0", "--port", "8501"]
