# syntax=docker/dockerfile:1
# The finance_pipeline code location. One image serves three roles:
#   - the code server (default CMD), which the webserver and daemon reach over gRPC;
#   - every run (EcsRunLauncher / K8sRunLauncher start it with `dagster api execute_run`);
#   - the restore drill job and the `finance-pipeline` CLI for operators.
# Build: docker build -t finance-pipeline:<sha> .
#        (ECS: add --build-arg DAGSTER_YAML=deploy/ecs/dagster.yaml)
FROM python:3.11-slim

ARG DAGSTER_YAML=deploy/dagster.postgres.yaml

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    FP_VAR_DIR=/opt/dagster/var

WORKDIR /opt/dagster/app

# Dependencies first, pinned by constraints.txt (the same set CI tests), so code changes
# do not invalidate this layer.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p finance_pipeline \
    && printf '' > finance_pipeline/__init__.py \
    && pip install -c constraints.txt . \
    && pip uninstall -y finance-pipeline

COPY finance_pipeline ./finance_pipeline
RUN pip install --no-deps -c constraints.txt . \
    && python -c "import finance_pipeline.definitions"

COPY workspace.yaml ./
COPY ${DAGSTER_YAML} ${DAGSTER_HOME}/dagster.yaml

RUN useradd --system --uid 10001 --home-dir /opt/dagster dagster \
    && mkdir -p ${FP_VAR_DIR} \
    && chown -R dagster ${DAGSTER_HOME} ${FP_VAR_DIR}
USER dagster

EXPOSE 4000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s \
    CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "finance_pipeline.definitions"]
