# zerofeed producer: decodes and augments images for a trainer. No TensorFlow.
#   scripts/build-wheelhouse    # optional: fills docker/wheels/ so the build needs no index
#   docker build -f docker/producer.Dockerfile -t zerofeed-producer .
#   docker build -f docker/producer.Dockerfile --build-arg BASE_IMAGE=zerofeed-base:bookworm ...
# Any Debian-like image with python3.11 and its venv module works as BASE_IMAGE.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
COPY docker/wheels/ /wheels/
COPY pyproject.toml setup.py README.md /src/
COPY zerofeed/ /src/zerofeed/
# The C accelerators need a compiler and Python's, libjpeg-turbo's and libdeflate's headers;
# without them (no Debian mirror reachable) zerofeed still installs and makes the same pixels,
# more slowly.
RUN (apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev \
        libpython3-dev libjpeg62-turbo-dev libdeflate-dev) >/dev/null 2>&1 \
    || echo "no compiler: portable decode and resize"
# Offline from docker/wheels/ when it holds wheels, else from the package index.
RUN python3 -m venv /opt/venv \
 && if ls /wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links /wheels; fi \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check "$@" /src \
 && if /opt/venv/bin/python -c "import tensorflow" 2>/dev/null; then echo "tensorflow must not be in the producer image" >&2; exit 1; fi

FROM ${BASE_IMAGE}
RUN (apt-get update -qq && apt-get install -y -qq --no-install-recommends libjpeg62-turbo libdeflate0 \
        && rm -rf /var/lib/apt/lists/*) >/dev/null 2>&1 || true
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/zerofeed/healthcheck.py
RUN useradd --uid 10001 --user-group --create-home zerofeed \
 && mkdir /data && chown zerofeed:zerofeed /data
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    ZEROFEED_DATA_ROOT=/data
USER zerofeed
WORKDIR /home/zerofeed
# Healthy: the producer runs with its workers and is connected to its consumer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "/opt/zerofeed/healthcheck.py", "producer"]
# Run with an init (docker run --init, compose init: true): SIGTERM then reaches the producer,
# which finishes the batch in hand and hands the rest back before exiting.
ENTRYPOINT ["zerofeed"]
CMD ["producer"]
