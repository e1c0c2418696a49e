# syntax=docker/dockerfile:1
# ucloud-operator image: `make image` (or docker build -t ucloud-operator:dev .).
#
# Two stages on the same base, so the virtualenv's interpreter path is the same in both:
#   builder  installs the pinned dependencies of pyproject.toml, then the operator, into /opt/venv
#   final    the slim base plus /opt/venv, numeric non-root user, no pip, no compilers
#
# BASE_IMAGE is the public slim Python 3.11 image by default; pin it by digest for releases:
#   docker build --build-arg BASE_IMAGE=python:3.11-slim@sha256:<digest> .
# Any Python >= 3.11 base with `python3` on PATH and the venv module works: hack/base-image.sh
# makes one from Debian's packages (python3 in /usr/bin, no pip) where no registry is reachable,
# and `make image` (hack/image.sh) uses it there. Hence `python3`, never `python`, below.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
# Unset by default. hack/image.sh (podman) points it at the host's pip settings (a PyPI mirror, the
# CA bundle of a TLS-inspecting proxy), mounted for the build only; this stage is not shipped.
ARG PIP_CONFIG_FILE
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python3 -m venv /opt/venv
# Dependencies first (a layer that changes only with pyproject.toml): exactly the pinned
# project.dependencies, without the dev extras.
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > requirements.txt \
 && /opt/venv/bin/pip install --require-virtualenv --requirement requirements.txt
# The operator itself (README.md is the package's readme metadata).
COPY README.md ./
COPY operator/ operator/
RUN /opt/venv/bin/pip install --require-virtualenv --no-deps . \
 && /opt/venv/bin/python -m ucloud_operator --version \
 && /opt/venv/bin/python -m pip uninstall --yes pip setuptools \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${BASE_IMAGE}
# The runtime needs no package installer: drop the base image's own (a base without pip has none).
RUN if python3 -m pip --version >/dev/null 2>&1; then \
      PIP_ROOT_USER_ACTION=ignore python3 -m pip uninstall --yes pip setuptools wheel; \
    fi
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A passwd and group entry for the runtime user, as distroless' "nonroot" has: a runtime does not
# make one (containerd, CRI-O and Docker run the UID as it is), and libraries that look the user up
# (getpass, ~ expansion) would fail. The operator itself needs none (it names itself).
RUN echo 'nonroot:x:65532:65532:nonroot:/tmp:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'nonroot:x:65532:' >> /etc/group
# Numeric, so that runAsNonRoot can verify it; the chart runs as the same UID and GID.
USER 65532:65532
WORKDIR /tmp
# 8080: /metrics   8081: /healthz, /readyz
EXPOSE 8080 8081
# Exec form: the operator is PID 1 and gets SIGTERM directly.
ENTRYPOINT ["python", "-m", "ucloud_operator"]
# Metadata last: a new revision changes only this layer, not the cached ones above.
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="ucloud-operator" \
      org.opencontainers.image.description="Kubernetes operator for UCloudJob (ucloudjobs.ucloud.dk/v1): replica pods in UCloud's six job states" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
