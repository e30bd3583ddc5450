"""Safe artifacts: nothing in src/ or dags/ can unpickle what it reads from a store.

An AST scan, so comments and strings that merely mention these names do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(REPO / "src").rglob("*.py"), *(REPO / "dags").rglob("*.py")])

UNPICKLERS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("pickle", "Unpickler"),
    ("cPickle", "load"),
    ("cPickle", "loads"),
    ("dill", "load"),
    ("dill", "loads"),
    ("cloudpickle", "load"),
    ("cloudpickle", "loads"),
    ("joblib", "load"),
    ("numpy", "load"),
    ("np", "load"),
    ("pd", "read_pickle"),
    ("pandas", "read_pickle"),
    ("mlflow.pytorch", "load_model"),
    ("mlflow.pyfunc", "load_model"),
}
# the serving check before a promotion loads the logged model as MLflow serving would: MLflow 3 refuses
# any pickle payload there (a cloudpickled python_model; a pt2 record torch's weights_only unpickler would
# not admit) unless MLFLOW_ALLOW_PICKLE_DESERIALIZATION allows it, and the check pins that off
ALLOWED = {("artifacts.py", "mlflow.pyfunc.load_model")}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module in {"pickle", "cPickle", "dill", "cloudpickle"}:
            found.append(f"{path}:{node.lineno}: imports from {node.module}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        owner, _, attr = name.rpartition(".")
        keywords = {k.arg: k.value for k in node.keywords}
        if (owner, attr) in UNPICKLERS and (path.name, name) not in ALLOWED:
            allow = keywords.get("allow_pickle")
            if not (
                attr == "load" and owner in {"np", "numpy"} and isinstance(allow, ast.Constant) and not allow.value
            ):
                found.append(f"{path}:{node.lineno}: {name}()")
        if name == "torch.load":
            weights_only = keywords.get("weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                found.append(f"{path}:{node.lineno}: torch.load without weights_only=True")
        if name in {"yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load"}:
            loader = keywords.get("Loader")
            if not (loader is not None and _dotted(loader).endswith("SafeLoader")):
                found.append(f"{path}:{node.lineno}: {name} without SafeLoader")
    return found


def test_sources_were_found():
    assert len(SOURCES) > 20


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_unsafe_deserialisation(path: Path):
    assert _violations(path) == []


def test_the_scan_catches_what_it_should(tmp_path: Path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle, torch, yaml\n"
        "pickle.loads(b'')\n"
        "torch.load('x')\n"
        "torch.load('x', weights_only=False)\n"
        "yaml.load('a: 1')\n"
        "yaml.load('a: 1', Loader=yaml.SafeLoader)\n"
        "torch.load('x', weights_only=True)\n"
    )
    assert len(_violations(bad)) == 4
