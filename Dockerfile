# syntax=docker/dockerfile:1
#
# rotator's container image.
#
#   docker build -t rotator:0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Two stages: the builder makes a wheel of rotator and installs it with its runtime dependencies
# into a virtualenv; the final image gets only that virtualenv, on the same slim Python base.
# It runs as uid/gid 10001 and works with a read-only root filesystem: the only place it writes is
# $TMPDIR (/tmp, a tmpfs in Kubernetes), and all bytecode is compiled at build time.
# Kubernetes manifests, Vault policies and alert rules: deploy/ (see deploy/README.md).

# Python 3.12 on Debian 13 (trixie), slim variant, pinned by the digest of its multi-platform
# index. Move the tag and the digest together, on purpose (docker buildx imagetools inspect).
# Both stages start from it, and the label base.name names it. CI builds this same file on a
# local Debian 12 root filesystem instead (scripts/build-ci-image, deploy/README.md): so nothing
# below names where Python lives, only `python` on PATH.
ARG BASE_IMAGE=docker.io/library/python:3.12.12-slim@sha256:f3fa41d74a768c2fce8016b98c191ae8c1bacd8f1152870a3f9f87d350920b7c
# checkov:skip=CKV_DOCKER_7: the tag and digest are BASE_IMAGE's default, which checkov does not expand
FROM ${BASE_IMAGE} AS base

# --- builder: locked dependencies, then rotator's wheel, in a virtualenv -------------------------
FROM base AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src

# The virtualenv has no pip of its own: the builder's pip installs into it (--python). The
# dependencies come first, from the lock and checked against its hashes, in a layer of their own
# that a change to rotator's code does not rebuild; the wheel adds nothing to them (--no-deps).
COPY requirements/runtime.lock ./requirements/
RUN python -m venv --without-pip /opt/rotator \
    && python -m pip --python /opt/rotator/bin/python install --no-cache-dir --no-compile \
        --require-hashes --only-binary :all: -r requirements/runtime.lock

COPY pyproject.toml README.md LICENSE ./
COPY rotator ./rotator

# Bytecode is compiled here with unchecked hashes, so it stays valid whatever the files' mtimes
# and nothing is ever compiled (or written) at run time.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m pip --python /opt/rotator/bin/python install --no-cache-dir --no-compile \
        --no-deps /wheels/rotator-*.whl \
    && /opt/rotator/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        /opt/rotator/lib \
    && /opt/rotator/bin/rotator --version

# --- runtime -----------------------------------------------------------------------------------
FROM base AS runtime

ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="rotator" \
      org.opencontainers.image.description="Rotates Intercom identity-verification secrets and keeps them in HashiCorp Vault or OpenBao" \
      org.opencontainers.image.source="https://github.com/rotator-dev/rotator" \
      org.opencontainers.image.url="https://github.com/rotator-dev/rotator" \
      org.opencontainers.image.documentation="https://github.com/rotator-dev/rotator/blob/main/deploy/README.md" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="rotator developers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# A system user with no home directory and no login shell; pip leaves the image (nothing installs
# at run time); the standard library is compiled once here, as the root filesystem is read-only.
RUN groupadd --system --gid 10001 rotator \
    && useradd --system --no-log-init --uid 10001 --gid 10001 \
        --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin rotator \
    && python -m pip uninstall --yes --no-cache-dir --root-user-action=ignore pip \
    && python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        "$(python -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"

COPY --from=builder /opt/rotator /opt/rotator

ENV PATH=/opt/rotator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    HOME=/tmp \
    ROTATOR_CONFIG=/etc/rotator/rotator.toml

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080

# `rotator run` serves GET /healthz on 8080; the standard library asks (the image has no curl).
# It concerns the daemon only; Kubernetes ignores HEALTHCHECK and uses the probes in deploy/.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-B", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

ENTRYPOINT ["rotator"]
CMD ["run"]
