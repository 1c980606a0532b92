# syntax=docker/dockerfile:1.7
# Shoal server image: a builder stage installs the wheel with the server drivers into a venv; the
# runtime stage copies only that venv onto slim Python and runs as a non-root user.
#
#   docker build -t shoal .                                    # drivers: redis, postgres, qdrant, pgvector, kafka
#   docker build --build-arg EXTRAS=all -t shoal .             # + milvus
#   docker run -p 8080:8080 -v shoal-data:/data -e SHOAL_API_KEYS=... shoal
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
ARG EXTRAS=redis,postgres,qdrant,pgvector,kafka
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/shoal
# Build the wheel from the sources (the ONNX model and tokenizer ship inside it as package data),
# then install it with its extras; the sources never reach the runtime image.
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/shoal/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/shoal/bin/pip install --no-cache-dir "$(ls /wheels/shoal-*.whl)[${EXTRAS}]" \
 && /opt/shoal/bin/shoal --help > /dev/null

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="shoal" \
      org.opencontainers.image.description="Live streams of short text into embeddings, search, insights, recommendations and RAG." \
      org.opencontainers.image.licenses="Apache-2.0"
# uid/gid 10001: numeric so Kubernetes' runAsNonRoot can verify it, above the host's system range.
RUN groupadd --system --gid 10001 shoal \
 && useradd --system --uid 10001 --gid shoal --home-dir /data --no-create-home --shell /usr/sbin/nologin shoal \
 && mkdir -p /data \
 && chown shoal:shoal /data
COPY --from=builder /opt/shoal /opt/shoal
ENV PATH=/opt/shoal/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SHOAL_HOST=0.0.0.0 \
    SHOAL_PORT=8080 \
    SHOAL_DATA_DIR=/data \
    SHOAL_LOG_JSON=true
WORKDIR /data
# Embedded data (SQLite, Qdrant Edge, the log) lives here when no server URLs are set.
VOLUME ["/data"]
EXPOSE 8080
USER 10001:10001
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('SHOAL_PORT', '8080')}/health\", timeout=2)"]
ENTRYPOINT ["shoal"]
CMD ["serve"]
