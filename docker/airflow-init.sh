#!/usr/bin/env bash
# One-shot Airflow setup (service `airflow-init`, and the same step of the native topology test):
# migrate the metadata database, write the login of the SimpleAuthManager admin, create one
# one-slot pool per model in params.yaml, named lifelong__<model> (model-changing steps share it,
# so two runs never update one model at once), and the object-storage connection. Idempotent.
set -euo pipefail

: "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD is not set}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?}"

airflow db migrate

pools="$(mktemp)"
trap 'rm -f "$pools"' EXIT
python - "$pools" <<'PY'
import json, os, pathlib

# SimpleAuthManager reads {"user": "password"} from this file; without it, it would invent a
# password and print it to the log. Compose shares the file with the api-server (volume airflow-auth).
auth = pathlib.Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
auth.parent.mkdir(parents=True, exist_ok=True)
auth.write_text(json.dumps({os.environ.get("AIRFLOW_ADMIN_USER", "admin"): os.environ["AIRFLOW_ADMIN_PASSWORD"]}) + "\n")
auth.chmod(0o600)
PY
# the pools as lifelong names them (one per model in params.yaml, plus task additions)
python -m lifelong.airflow.embedded_runner pools > "$pools"
airflow pools import "$pools"

if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then
  airflow connections delete lifelong_s3 >/dev/null 2>&1 || true
  airflow connections add lifelong_s3 --conn-type aws \
    --conn-extra "{\"endpoint_url\": \"${AWS_ENDPOINT_URL}\", \"region_name\": \"${AWS_DEFAULT_REGION:-us-east-1}\"}"
fi
echo "airflow-init: done"
