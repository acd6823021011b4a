# riskflow images. The pipeline image (worker, bridge, topic init) is slim; the edge image adds
# the detection extra (ultralytics, torch, the bundled fall model):
#   docker build --target pipeline -t riskflow:pipeline .
#   docker build --target edge -t riskflow:edge .
FROM python:3.11.10-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RISKFLOW_CONFIG_DIR=/etc/riskflow
WORKDIR /app
RUN useradd --create-home --uid 10001 riskflow
COPY pyproject.toml README.md ./
COPY riskflow ./riskflow
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY detection_edge ./detection_edge
COPY console ./console
COPY deploy/config /etc/riskflow

FROM base AS pipeline
RUN pip install --no-cache-dir .
USER 10001
ENTRYPOINT ["riskflow"]
CMD ["--help"]

FROM base AS edge
# OpenCV's runtime libraries.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1=1.6.0-1 libglib2.0-0=2.74.6-2+deb12u9 \
    && rm -rf /var/lib/apt/lists/*
# The project itself with its detect extra: versions come from pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[detect]"
USER 10001
ENTRYPOINT ["riskflow"]
CMD ["edge", "run"]
