#!/bin/sh
# One-shot object-storage setup (service `minio-setup`, image minio/mc): the buckets for
# MLflow artifacts and the DVC remote, and a non-root access key limited to read-write.
# Idempotent: safe to run on every `docker compose up`.
set -eu

mc alias set lifelong "http://minio:9000" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "lifelong/$MLFLOW_BUCKET" "lifelong/$DVC_BUCKET"
mc admin user add lifelong "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
mc admin policy attach lifelong readwrite --user "$S3_ACCESS_KEY" || true  # "already attached" on re-runs
echo "buckets ready: $MLFLOW_BUCKET $DVC_BUCKET"
