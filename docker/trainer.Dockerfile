# Trainer image (CPU): ingestion, training, evaluation, export and the demo (whose last step serves the
# exported model, hence the service requirements too).
# torch comes from the PyTorch CPU index (PyPI's default Linux wheel is the CUDA build); torchsort is then
# compiled against it without build isolation (docs: ../shared/reference/install.md, sections 2-3).
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ECGK_HOME=/data

RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY requirements/ requirements/
RUN pip install --no-build-isolation -c requirements/constraints.txt -r requirements/train.txt \
    -r requirements/service.txt
COPY pyproject.toml README.md ./
COPY ecg_k/ ecg_k/
COPY training/ training/
COPY service/ service/
COPY dashboard/ dashboard/
RUN pip install --no-deps --no-build-isolation . \
    && useradd --create-home --uid 10001 ecgk \
    && mkdir -p /data && chown ecgk /data

USER ecgk
VOLUME ["/data"]
ENTRYPOINT ["ecgk"]
CMD ["demo"]
