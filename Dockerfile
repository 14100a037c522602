# The onepipe worker image.
#
#   docker build -t onepipe .
#   docker run -e ONEPIPE_BROKER=kafka:9092 -p 8080:8080 -v onepipe-data:/data onepipe
#
# runs `onepipe worker` (any other command: `docker run onepipe apply /catalog`, ...).
#
# The API needs tokens: the image reads them from /etc/onepipe/tokens.json (a volume), so
# a worker listening on 0.0.0.0 is never open. It starts with no token (reads answer,
# every publish and registry change is refused); create them in the running container,
# which picks them up within a second; the token is printed once:
#   docker exec <container> onepipe tokens add admin --admin
#   docker exec <container> onepipe tokens add ci --publish 'widgets*'
# Share the volume (or mount one file) between workers behind one load balancer.
# docs/compose.yaml runs two workers with Apache Kafka, MinIO and PostgreSQL.
# tests/test_image.py checks what can be checked without a Docker engine: the entry point
# is the package's console script and the HEALTHCHECK line passes against a real worker.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the package and its dependencies into a venv; compilers stay in this stage.
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/onepipe
WORKDIR /src
# The folders pyproject.toml maps to onepipe.<folder>; tests and benchmarks stay out.
COPY pyproject.toml README.md ./
COPY onepipe ./onepipe
COPY app ./app
COPY agents ./agents
COPY tables ./tables
COPY schemas ./schemas
COPY sinks ./sinks
RUN /opt/onepipe/bin/pip install --upgrade pip && /opt/onepipe/bin/pip install .

# ---- run: slim Python, the venv, a user without privileges.
FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --create-home --home-dir /home/onepipe onepipe \
    && mkdir /data /etc/onepipe && chown onepipe:onepipe /data /etc/onepipe
COPY --from=build /opt/onepipe /opt/onepipe
ENV PATH=/opt/onepipe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ONEPIPE_WEB_HOST=0.0.0.0 \
    ONEPIPE_WEB_PORT=8080 \
    ONEPIPE_DATA_DIR=/data \
    ONEPIPE_TOKENS_FILE=/etc/onepipe/tokens.json
USER onepipe
WORKDIR /data
# RocksDB tables and the default file lake (use an s3:// ONEPIPE_LAKE_URL in production).
VOLUME /data
# The API tokens' file (hashes only); a named volume here starts owned by the onepipe user.
VOLUME /etc/onepipe
EXPOSE 8080
# Liveness only (/healthz asks nothing of Kafka); orchestrators route traffic on /readyz.
# slim has no curl: Python's urllib, which exits non-zero on a refused connection or a
# non-2xx answer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('ONEPIPE_WEB_PORT', '8080') + '/healthz', timeout=3)"]
ENTRYPOINT ["onepipe"]
CMD ["worker"]
