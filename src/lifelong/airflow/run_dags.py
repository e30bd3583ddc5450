"""Child process of :func:`lifelong.airflow.embedded.run_dag`: run DAG runs with ``dag.test``.

Started with the embedded Airflow environment. Prints one ``LIFELONG-RESULT {json}`` line
per run on stdout; everything Airflow logs goes to stderr (the caller's log file).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from lifelong.airflow.embedded import DAGS_DIR, RESULT_PREFIX


def main(request_json: str) -> int:
    request = json.loads(request_json)
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # Airflow prints task logs to stdout; keep ours clean
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    if request["dag_id"] not in bag.dags:
        errors = "; ".join(f"{k}: {v.splitlines()[-1]}" for k, v in bag.import_errors.items())
        print(
            RESULT_PREFIX + json.dumps({"error": f"no DAG {request['dag_id']}", "import_errors": errors}),
            file=real_stdout,
            flush=True,
        )
        return 2
    dag = bag.dags[request["dag_id"]]
    for value in request["dates"]:
        logical = datetime.fromisoformat(value).replace(tzinfo=UTC) if value else None
        try:
            run = dag.test(logical_date=logical, run_conf=request.get("conf"))
        except Exception as exc:  # noqa: BLE001 - e.g. the trigger form's values fail their JSON schema
            logging.exception("run of %s for %s could not start", dag.dag_id, value)
            message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            result = {"logical_date": value, "run_id": None, "state": "refused", "tasks": {}, "error": message}
        else:
            tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
            result = {"logical_date": value, "run_id": run.run_id, "state": str(run.state), "tasks": tasks}
        print(RESULT_PREFIX + json.dumps(result), file=real_stdout, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
