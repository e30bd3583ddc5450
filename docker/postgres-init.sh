#!/usr/bin/env bash
# Create the Airflow and MLflow databases, each owned by its own role.
#
# Runs once from /docker-entrypoint-initdb.d in the `postgres` service, and from the native
# topology test (tests/production/topology.py) against the machine's PostgreSQL with unique names.
# Passwords come from the environment (.env); names default to the docker-compose ones.
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD is not set}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v airflow_user="${AIRFLOW_DB_USER:-airflow}" -v airflow_db="${AIRFLOW_DB_NAME:-airflow}" \
  -v airflow_pw="${AIRFLOW_DB_PASSWORD}" \
  -v mlflow_user="${MLFLOW_DB_USER:-mlflow}" -v mlflow_db="${MLFLOW_DB_NAME:-mlflow}" \
  -v mlflow_auth_db="${MLFLOW_AUTH_DB_NAME:-mlflow_auth}" -v mlflow_pw="${MLFLOW_DB_PASSWORD}" <<'SQL'
CREATE ROLE :"airflow_user" LOGIN PASSWORD :'airflow_pw';
CREATE DATABASE :"airflow_db" OWNER :"airflow_user";
CREATE ROLE :"mlflow_user" LOGIN PASSWORD :'mlflow_pw';
CREATE DATABASE :"mlflow_db" OWNER :"mlflow_user";
CREATE DATABASE :"mlflow_auth_db" OWNER :"mlflow_user";
SQL
