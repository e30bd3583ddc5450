"""Benchmark: how long each DAG file takes to parse with N models in params.yaml (issue 21, item 2's
parse target: under 1 s per file with 50 models).

The daily DAG file builds one DAG per model; the scheduler's DAG processor re-parses every file
every ``min_file_process_interval`` (30 s by default), so its parse time is paid per file, over and
over, whatever the models do. For N = 1, 10 and 50 forecasters (copies of ``demand_forecaster`` on
the same data set with seeds 0..N-1: what matters here is the number of DAGs, not their data),
a fresh Python process imports Airflow first (the DAG processor has it imported already), then
parses each file of ``dags/`` with ``DagBag`` (the DAG processor's parser), three times: the first
parse (judged: it imports lifelong's modules, as a fresh parsing process does) and the median of the
later ones are reported, with the ratios to N = 1 measured in the same run.

Usage: ``python -m bench.dag_parse [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import REPO, Report, Target, md_table

MODEL = "demand_forecaster"
TARGET_S = 1.0
REPEATS = 3
# parses each DAG file REPEATS times in one process that has Airflow imported, as the DAG processor has
PROBE = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
out = {}
for path in sys.argv[2:]:
    times = []
    for _ in range(int(sys.argv[1])):
        started = time.perf_counter()
        bag = DagBag(dag_folder=path)
        times.append(time.perf_counter() - started)
    errors = {k: str(v)[-300:] for k, v in bag.import_errors.items()}
    out[path] = {"seconds": times, "dags": len(bag.dag_ids), "errors": errors}
print("PARSE" + json.dumps(out))
"""


def project_with_models(folder: Path, count: int) -> Path:
    """A project whose params.yaml declares ``count`` forecasters: ``demand_forecaster`` and its copies."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    base = raw["models"][MODEL]
    models = {MODEL: base}
    for i in range(1, count):
        copy = json.loads(json.dumps(base))
        copy.setdefault("train", {})["seed"] = i
        models[f"{MODEL}_{i:02d}"] = copy
    raw["models"] = {**models, **{k: v for k, v in raw["models"].items() if k != MODEL}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def parse_times(project: Path, home: Path) -> dict[str, dict]:
    """Each DAG file's parse times (s) and DAG count, in a fresh process pointed at ``project``."""
    env = {
        **os.environ,
        "LIFELONG_PROJECT_DIR": str(project),
        "LIFELONG_HOME": str(home),
        "PYTHONPATH": str(REPO / "src"),
    }
    env["AIRFLOW_HOME"] = str(home / "airflow")
    files = sorted(str(p) for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPEATS), *files], env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0 or "PARSE" not in done.stdout:
        raise RuntimeError(f"parsing the DAG files failed: {done.stderr[-2000:]}")
    found = json.loads(done.stdout.rpartition("PARSE")[2])
    return {Path(path).name: result for path, result in found.items()}


def bench(quick: bool) -> Report:
    started = time.perf_counter()
    counts = (1, 10) if quick else (1, 10, 50)
    measured: dict[int, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="lifelong-dagparse-") as tmp:
        for n in counts:
            project = project_with_models(Path(tmp) / f"n{n}", n)
            measured[n] = parse_times(project, Path(tmp) / f"home{n}")
            shutil.rmtree(Path(tmp) / f"home{n}", ignore_errors=True)
            print(
                f"[dag_parse] {n} model(s): {json.dumps({k: v['dags'] for k, v in measured[n].items()})}",
                file=sys.stderr,
            )
    files = sorted(measured[counts[0]])
    rows, targets = [], []
    for name in files:
        first = measured[counts[0]][name]["seconds"]
        base_cold, base_warm = first[0], statistics.median(first[1:])
        cells = []
        for n in counts:
            result = measured[n][name]
            if result["errors"]:
                raise RuntimeError(f"{name} with {n} models: {result['errors']}")
            cold, warm = result["seconds"][0], statistics.median(result["seconds"][1:])
            cells.append(
                f"{cold:.3f} s ({cold / base_cold:.1f}x) / {warm:.3f} s ({warm / base_warm:.1f}x), "
                f"{result['dags']} DAG(s)"
            )
        rows.append([name, *cells])
        cold = measured[counts[-1]][name]["seconds"][0]
        targets.append(
            Target(
                f"{name} parses in under {TARGET_S:g} s with {counts[-1]} models",
                cold < TARGET_S,
                f"{cold:.3f} s, its first parse; {base_cold:.3f} s with 1 model",
            )
        )
    markdown = "\n".join(
        [
            "Each DAG file parsed by `DagBag` (the DAG processor's parser) in a process that has Airflow "
            f"imported already, {REPEATS} times: the first parse (it imports lifelong's modules, as the DAG "
            "processor's fresh child does; judged) / the median of the later ones; the ratios to one model in "
            "the same run. The models are "
            f"copies of `{MODEL}` (same data set, seeds 0..N-1): parsing depends on how many DAGs a file "
            "builds, not on their data.",
            "",
            md_table(["DAG file", *(f"{n} model(s)" for n in counts)], rows),
        ]
    )
    settings = f"{'QUICK' if quick else 'FULL'}: N = {', '.join(map(str, counts))} forecasters"
    return Report("dag_parse", "2c. DAG files' parse time with many models", settings, markdown, tuple(targets),
                  seconds=time.perf_counter() - started)  # fmt: skip


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 10 models only")
    report = bench(parser.parse_args(argv).quick)
    print(report.section())
    return report.section()


if __name__ == "__main__":
    main()
