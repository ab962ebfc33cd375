# zerofeed trainer: TensorFlow + Keras + zerofeed, running examples/compose_train.py by default.
#   scripts/build-wheelhouse    # optional: fills docker/wheels/ so the build needs no index
#   docker build -f docker/trainer.Dockerfile -t zerofeed-trainer .
#   docker build -f docker/trainer.Dockerfile --build-arg BASE_IMAGE=zerofeed-base:bookworm ...
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
COPY docker/wheels/ /wheels/
COPY pyproject.toml setup.py README.md /src/
COPY zerofeed/ /src/zerofeed/
# Offline from docker/wheels/ when it holds wheels, else from the package index.
RUN python3 -m venv /opt/venv \
 && if ls /wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links /wheels; fi \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check "$@" "/src[tensorflow-cpu]"

FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/zerofeed/healthcheck.py
COPY examples/ /opt/zerofeed/examples/
RUN useradd --uid 10001 --user-group --create-home zerofeed
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 ZEROFEED_BIND=tcp://0.0.0.0:5555
USER zerofeed
WORKDIR /opt/zerofeed
EXPOSE 5555
# Healthy: something in the container listens on ZEROFEED_BIND's port (the FeedSequence).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "/opt/zerofeed/healthcheck.py", "trainer"]
CMD ["python3", "examples/compose_train.py"]
