"""docker-compose.yml against the Compose specification's JSON schema, plus the house rules.

There is no Docker engine here, so the file is checked statically: it validates against the
shipped schema (docker/compose-spec.json) before and after variable interpolation with
.env.example, and the checks below hold (dependencies, one Airflow configuration, the GPU
queue, healthchecks, loopback ports, no literal secrets, build-time installs only).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
SCHEMA = REPO / "docker" / "compose-spec.json"
ENV_EXAMPLE = REPO / ".env.example"

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$\$")
_SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|FERNET|JWT|_KEY$|_KEY_ID$|_AUTH$)")
_URL_CREDENTIALS = re.compile(r"://[^/:@\s]*:(?P<password>[^@\s]*)@")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose-style ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$`` in every string.

    >>> interpolate({"a": ["${X:-1}", "$${Y}", "${Z}"]}, {"Z": "z"})
    {'a': ['1', '${Y}', 'z']}
    """
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        have = env.get(name)
        if op in (":-", "-"):
            return have if have or (op == "-" and have is not None) else arg
        if op in (":?", "?") and not have:
            raise KeyError(f"{name}: {arg}")
        return have or ""

    return _VAR.sub(sub, value)


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def validator() -> jsonschema.Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def airflow_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if name.startswith("airflow-")}


def long_running(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("restart", "no") != "no"}


def queues_of(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return command[command.index("--queues") + 1].split(",")


# --------------------------------------------------------------------------- the schema


def test_valid_against_compose_spec(compose: dict[str, Any], validator: jsonschema.Validator) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors


def test_valid_after_interpolating_env_example(compose: dict[str, Any], validator: jsonschema.Validator) -> None:
    resolved = interpolate(compose, read_env_file(ENV_EXAMPLE))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(resolved)]
    assert not errors


def test_schema_rejects_what_compose_rejects(compose: dict[str, Any], validator: jsonschema.Validator) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["redis"]["healthcheck"]["intervall"] = "10s"
    broken["services"]["airflow-worker"]["depends_on"]["redis"] = {"condition": "service_ready"}
    messages = [e.message for e in validator.iter_errors(broken)]
    assert len(messages) == 2, messages


def test_every_required_variable_is_in_env_example(compose: dict[str, Any]) -> None:
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", json.dumps(compose)))
    assert used, "secrets are expected to be required variables"
    assert used <= set(read_env_file(ENV_EXAMPLE))
    interpolate(compose, read_env_file(ENV_EXAMPLE))  # raises on a missing required variable
    with pytest.raises(KeyError, match="AIRFLOW_FERNET_KEY"):
        interpolate(compose, {})


# --------------------------------------------------------------------------- the house rules


def test_depends_on_targets_exist_with_fitting_conditions(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, dep in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            assert target != name
            one_shot = services[target].get("restart") == "no"
            expected = "service_completed_successfully" if one_shot else "service_healthy"
            assert dep["condition"] == expected, f"{name} -> {target}"


def test_airflow_services_share_image_and_configuration(compose: dict[str, Any]) -> None:
    anchor = compose["x-airflow-env"]
    services = airflow_services(compose)
    assert set(services) == {
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-worker-gpu",
    }
    assert {s["image"] for s in services.values()} == {compose["x-airflow-common"]["image"]}
    assert compose["services"]["mlflow"]["image"] == compose["x-airflow-common"]["image"]
    for name, service in services.items():
        env = service["environment"]
        assert set(anchor) <= set(env), f"{name} lacks {set(anchor) - set(env)}"
        airflow_conf = {k: v for k, v in env.items() if k.startswith("AIRFLOW__")}
        assert airflow_conf == {k: v for k, v in anchor.items() if k.startswith("AIRFLOW__")}, name
        assert service["volumes"] == compose["x-airflow-common"]["volumes"], name
    assert anchor["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # the model lock is a PostgreSQL advisory lock on the metadata database the stack runs already
    lock = interpolate([anchor["LIFELONG_LOCK_URL"]], {"AIRFLOW_DB_PASSWORD": "pw"})[0]
    assert lock == "postgresql://airflow:pw@postgres:5432/airflow", lock
    assert anchor["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")


def test_workers_preload_the_pipeline_libraries(compose: dict[str, Any]) -> None:
    """The Celery settings every Airflow service reads name lifelong's worker imports, and naming them imports
    nothing heavy (the scheduler and the API server import the settings too)."""
    import subprocess
    import sys

    path = compose["x-airflow-env"]["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"]
    module, _, name = path.rpartition(".")
    probe = (
        f"import sys, importlib; config = getattr(importlib.import_module({module!r}), {name!r}); "
        "print(config['imports'][-1], 'torch' in sys.modules, 'mlflow' in sys.modules, "
        "config['broker_url'] is not None)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    out = done.stdout.splitlines()[-1].split()  # Airflow's configuration warnings may come first
    assert out == ["lifelong.airflow.worker_imports", "False", "False", "True"], out


def test_gpu_worker_serves_only_gpu_with_one_gpu(compose: dict[str, Any]) -> None:
    gpu, cpu = compose["services"]["airflow-worker-gpu"], compose["services"]["airflow-worker"]
    assert queues_of(gpu) == ["gpu"]
    assert queues_of(cpu) == ["default"]
    assert compose["x-airflow-env"]["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == "default"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert gpu["environment"]["LIFELONG_DEVICE"] == "cuda"
    assert "deploy" not in cpu


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    services = long_running(compose)
    assert {"postgres", "redis", "minio", "mlflow", "airflow-apiserver", "airflow-worker-gpu"} <= set(services)
    for name, service in services.items():
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), name
    for one_shot in ("airflow-init", "minio-setup"):
        assert compose["services"][one_shot]["restart"] == "no"


def test_ports_bound_to_loopback_by_default(compose: dict[str, Any]) -> None:
    published = {name: interpolate(s["ports"], {}) for name, s in compose["services"].items() if "ports" in s}
    assert {"airflow-apiserver", "mlflow", "minio"} <= set(published)
    for name, ports in published.items():
        for port in ports:
            assert isinstance(port, str) and port.startswith("127.0.0.1:") and port.count(":") == 2, (name, port)


def test_no_literal_secrets(compose: dict[str, Any]) -> None:
    """Every secret-looking value and every password inside a URL comes from a ${VARIABLE}."""
    checked = 0
    envs = [compose["x-airflow-env"], *(s.get("environment", {}) for s in compose["services"].values())]
    for env in envs:
        for key, value in env.items():
            value = str(value)
            if _SECRET_NAME.search(key) and not key.endswith(("_FILE", "_USERNAME")):
                assert value.startswith("${") and value.endswith("}"), key
                checked += 1
            for m in _URL_CREDENTIALS.finditer(value):
                assert m.group("password").startswith("${"), key
                checked += 1
    assert checked >= 20
    for key, value in read_env_file(ENV_EXAMPLE).items():
        if _SECRET_NAME.search(key) and not key.endswith("ACCESS_KEY"):  # an access key id names a user
            assert value == "change-me", f".env.example holds a real-looking {key}"


def test_everything_installed_at_build_time(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in text and "pip install" not in text
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:3\.3\.2-python3\.11$", dockerfile, re.M)
    installs = re.findall(r"^RUN pip install .*$", dockerfile, re.M)
    assert "torch==2.13.0" in installs[0]
    assert "requirements.txt" in installs[1]
    assert "--no-deps /opt/lifelong/build" in installs[2]
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.M)
    assert pinned and pinned.group(1) == "3.3.2"


def test_mounted_and_copied_files_exist(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and source != "./dags":  # dags/ is the lead's, may be empty
                assert (REPO / source).exists(), source
    for script in ("postgres-init.sh", "airflow-init.sh", "mlflow-server.sh"):
        subprocess.run(["bash", "-n", str(REPO / "docker" / script)], check=True)
    subprocess.run(["sh", "-n", str(REPO / "docker" / "minio-setup.sh")], check=True)
    assert "/.env" in (REPO / ".gitignore").read_text().split()
