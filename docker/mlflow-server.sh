#!/usr/bin/env bash
# Start the MLflow tracking server with basic auth on a SQL backend, artifacts proxied to a destination.
#
# Entry point of the `mlflow` service in docker-compose.yml and the same process in the native
# topology test. Everything comes from the environment; the basic-auth config file is written at
# start because it must hold the auth database URI (with its password), which lives only in .env.
#
# A successful login is cached for MLFLOW_AUTH_CACHE_TTL_S seconds (60; 0 turns it off): without it
# every request re-derives the password hash, ~0.3 s of CPU, and a daily run makes hundreds of
# requests (bench/RESULTS.md section 2d). A password changed through the API takes effect at once on
# the server worker that handled the change, on the others within the TTL.
set -euo pipefail

: "${MLFLOW_BACKEND_STORE_URI:?}"
: "${MLFLOW_AUTH_DATABASE_URI:?}"
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?}"

ini="${MLFLOW_AUTH_CONFIG_PATH:-${TMPDIR:-/tmp}/lifelong-mlflow-basic-auth.ini}"
umask 077
cat >"$ini" <<INI
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_S:-60}
INI
export MLFLOW_AUTH_CONFIG_PATH="$ini"
export MLFLOW_AUTH_ADMIN_USERNAME="${MLFLOW_AUTH_ADMIN_USERNAME:-admin}"
# MLflow's GenAI job runner (extra huey processes) is not used by lifelong
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

exec mlflow server \
  --app-name basic-auth \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
  --host "${MLFLOW_HOST:-0.0.0.0}" \
  --port "${MLFLOW_PORT:-5000}" \
  --workers "${MLFLOW_WORKERS:-2}"
