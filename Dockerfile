# lifelong on the official Airflow image: one image for every Airflow service and the MLflow server.
# Everything is installed at build time; nothing is installed when a container starts.
#   docker compose build        (docker-compose.yml builds it as ${LIFELONG_IMAGE})
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

# Folders owned by the airflow user (uid 50000, gid 0): build sources, entry scripts, and the
# mount points of the named volumes (a new volume takes the ownership of its mount point).
USER root
RUN mkdir -p /opt/lifelong/build /opt/lifelong/docker /opt/lifelong/project /opt/lifelong/home /opt/airflow/auth \
 && chown -R airflow:0 /opt/lifelong /opt/airflow/auth
USER airflow

# 1. torch first, pinned. On linux/amd64 PyPI serves the CUDA build, which the GPU worker uses.
RUN pip install --no-cache-dir torch==2.13.0

# 2. The pinned, tested stack; apache-airflow is pinned inside it to the image's version.
COPY --chown=airflow:0 requirements.txt docker/requirements-prod.txt /opt/lifelong/build/
RUN pip install --no-cache-dir -r /opt/lifelong/build/requirements.txt -r /opt/lifelong/build/requirements-prod.txt

# 3. lifelong itself (no dependency resolution: the stack above is the one tested).
COPY --chown=airflow:0 pyproject.toml README.md /opt/lifelong/build/
COPY --chown=airflow:0 src /opt/lifelong/build/src
RUN pip install --no-cache-dir --no-deps /opt/lifelong/build && python -c "import lifelong"

# Entry scripts of airflow-init and mlflow (docker/*.sh).
COPY --chown=airflow:0 docker/*.sh /opt/lifelong/docker/

ENV LIFELONG_PROJECT_DIR=/opt/lifelong/project \
    LIFELONG_HOME=/opt/lifelong/home
