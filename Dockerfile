# corestore node image: the control API, the volume plugin, the Celery worker,
# redis, restic, and the production engines mongod and MinIO.
#
#   docker build -t corestore .
#   docker compose up -d        (see compose.yaml)
#
# The engines come from their vendors' official downloads, pinned by version
# and sha256. To upgrade one, change its version and checksum together
# (the vendor publishes the checksum next to each download).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- downloads: fetch and verify the pinned binaries -------------------------
FROM ${PYTHON_IMAGE} AS downloads

# MongoDB Community Server, Linux x86_64 tarball (the Ubuntu 22.04 build: same
# glibc and OpenSSL 3 generation as Debian 12).
ARG MONGODB_VERSION=8.0.11
ARG MONGODB_SHA256=5c4af1b28bd9c8c475526c029719f9066d3c86860702b0ad9fc4d2bfff1e0d8a
ARG MINIO_RELEASE=RELEASE.2025-04-22T22-12-26Z
ARG MINIO_SHA256=53e2a2cb16c5366ea6fbbc479c19ddb4c6a0948273e752f740fb1fbf27bb817c
ARG RESTIC_VERSION=0.18.0
ARG RESTIC_SHA256=98f6dd8bf5b59058d04bfd8dab58e196cc2a680666ccee90275a3b722374438e

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl bzip2 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /downloads

RUN curl -fsSL -o mongodb.tgz \
        "https://fastdl.mongodb.org/linux/mongodb-linux-x86_64-ubuntu2204-${MONGODB_VERSION}.tgz" \
    && echo "${MONGODB_SHA256}  mongodb.tgz" | sha256sum -c - \
    && tar -xzf mongodb.tgz --strip-components=2 --wildcards '*/bin/mongod' \
    && rm mongodb.tgz

RUN curl -fsSL -o minio \
        "https://dl.min.io/server/minio/release/linux-amd64/archive/minio.${MINIO_RELEASE}" \
    && echo "${MINIO_SHA256}  minio" | sha256sum -c -

RUN curl -fsSL -o restic.bz2 \
        "https://github.com/restic/restic/releases/download/v${RESTIC_VERSION}/restic_${RESTIC_VERSION}_linux_amd64.bz2" \
    && echo "${RESTIC_SHA256}  restic.bz2" | sha256sum -c - \
    && bunzip2 restic.bz2

RUN chmod 0755 mongod minio restic \
    && ./mongod --version \
    && ./minio --version \
    && ./restic version

# --- the image ----------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="corestore" \
      org.opencontainers.image.description="Node-local MongoDB databases, S3 buckets and Docker volumes, with snapshots"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VENV=/opt/corestore/venv \
    CORESTORE_DATA_DIR=/data/corestore \
    PATH=/opt/corestore/venv/bin:$PATH

# The pinned binaries go first on PATH: the stack then picks mongod and MinIO
# over the embedded engines, and install-deps.sh skips Debian's older restic.
COPY --from=downloads /downloads/mongod /downloads/minio /downloads/restic /usr/local/bin/

WORKDIR /app

# Debian packages and the virtualenv, by the same script as `make run`
# (redis-server, rsync; libcurl4 is what mongod needs beyond the base image).
COPY pyproject.toml ./
COPY scripts/install-deps.sh scripts/
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libcurl4 \
    && scripts/install-deps.sh \
    && rm -rf /var/lib/apt/lists/*

COPY manage.py ./
COPY corestore_project corestore_project/
COPY provisioning provisioning/
COPY volumes volumes/
COPY snapshots snapshots/

# The stack runs as root: the volume plugin creates its socket in the host's
# /run/docker/plugins, and restores give volume files back their owners.
# TODO: run redis, mongod and MinIO as an unprivileged user once the stack can
# give each supervised process its own user and data directory owner.

VOLUME ["/data/corestore"]

# control API, S3, MongoDB; Flower (5555) listens only when
# CORESTORE_FLOWER_BASIC_AUTH is set.
EXPOSE 3000 9000 27017

HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CORESTORE_CONTROL_PORT', '3000'), timeout=8)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "manage.py", "runstack"]
