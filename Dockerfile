# syntax=docker/dockerfile:1
#
# One image for every imagecore process: `imagecore serve` by default (API and
# worker in one process on SQLite + DATA_DIR, no configuration), `imagecore api`
# and `imagecore worker` as separate services (docker-compose.yml sets the
# command per service). Configuration comes only from the environment.
#
# Stage 1 builds the project's wheel and a wheelhouse of its dependencies;
# stage 2 is a slim Python with exactly those installed. libvips is the one in
# the pyvips-binary wheel: no apt packages, no ImageMagick, no Ghostscript.
#
# Checked here without a Docker engine: hadolint (`nox -s deploy`) and
# tests/unit/test_deployment.py. Not built or run here; see README "Docker".

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# Every dependency but pyvips ships cp311 manylinux wheels (x86_64 and
# aarch64); pyvips is an sdist that falls back to a pure-Python wheel without a
# compiler, and finds libvips through pyvips-binary's _libvips module.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --disable-pip-version-check --wheel-dir /wheels '.[server,mongo,s3,nats]'

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="imagecore" \
      org.opencontainers.image.description="Self-hosted, job-based image processing service on libvips" \
      org.opencontainers.image.licenses="MIT"
# The wheelhouse is bind-mounted, not copied: no wheel stays in a layer. It is
# the only index (--no-index), so it pins every version the build stage chose.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --disable-pip-version-check --no-index --find-links=/wheels \
        'imagecore[server,mongo,s3,nats]' \
    && groupadd --system --gid 10001 imagecore \
    && useradd --system --uid 10001 --gid imagecore --no-create-home \
        --home-dir /var/lib/imagecore --shell /usr/sbin/nologin imagecore \
    && install -d -o imagecore -g imagecore -m 0750 /var/lib/imagecore

# Listen on every interface of the container; DATA_DIR holds scratch files
# (and, for `serve` or an API without JWT_SECRET, the generated jwt-secret).
# A fresh named volume mounted there takes this directory's owner.
ENV PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/var/lib/imagecore

USER 10001:10001
WORKDIR /var/lib/imagecore
EXPOSE 3000

# GET /health answers 200 when every dependency answers, else 503: urlopen
# raises on both a 503 and a refused connection, so python exits 1. The
# worker serves no HTTP: docker-compose.yml disables this check for it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '3000'), timeout=4)"]

CMD ["imagecore", "serve"]
