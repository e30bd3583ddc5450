"""What one MLflow run holds, and how it is read back without trusting it.

The fixed layout of a run's artifacts:

* ``state/``: the LearnerState exactly as :func:`lifelong.learn.state.save_state` writes it
  (tensors as safetensors, the rest as JSON); the run tag ``state_sha256`` maps each file
  to its digest, and the run **param** ``state_manifest_sha256`` is the sha256 of that
  manifest (canonical JSON). Reading it back checks the listed sizes before downloading,
  the manifest against the param, the file set and digests against the manifest, then
  that every ``.safetensors`` file *is* one (8-byte header length, JSON header) before
  ``load_state`` parses anything: nothing read from the store is ever unpickled.

  Why the param makes a tampered manifest evident: MLflow tags (run and version) can be
  rewritten at any time, by anyone who may write to the tracking server, and artifacts can
  be overwritten in the artifact store; a run's params cannot change once logged (the
  tracking store refuses a second value for a key: "Changing param values is not allowed"),
  and there is no API to delete one. So whoever rewrites a state file must rewrite the
  manifest tag to match, and the rewritten tag no longer hashes to the param logged when
  the run uploaded its state; a run logged without the param is refused outright.
* ``model/``: for MLflow serving (lifelong never trains from it), with a signature, an input
  example and explicit pip requirements. A day-ahead forecaster's is a pyfunc
  (:mod:`lifelong.serving`: the raw frame in physical units in, the forecast in the target's
  units out; weights as safetensors, specs and normalisation stats as JSON, models from code),
  and so is a classifier's (signals in, labels and probabilities out); the rolling-window
  forecaster's is ``mlflow.pytorch.log_model`` in the ``pt2`` format (``torch.export``, a graph,
  no pickle) on normalised tensors. Before a promotion lifelong loads it as MLflow serving
  would and runs it once on its input example (:func:`check_serving_model`).
* ``plots/<name>.png``; params as dotted keys; per-epoch metrics with ``step=epoch``;
  the training data as an MLflow dataset input whose source is the DVC location
  (type ``dvc``) and whose digest is the data version.

Functions here take an ``MlflowClient`` (and, for the fluent ``log_model`` /
``log_input``, an active run); :mod:`lifelong.registry` decides when to call them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifelong.errors import RegistryError, StateError

if TYPE_CHECKING:
    from datetime import date

    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient

    from lifelong.config import ArchitectureSpec, DatasetSpec
    from lifelong.learn.state import LearnerState

STATE_DIR, MODEL_DIR = "state", "model"
NO_PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
MANIFEST_PARAM = "state_manifest_sha256"
MAX_STATE_BYTES = 16 << 30  # a state folder listed bigger than this is refused before it is downloaded
# explicit, so MLflow never infers requirements (seconds a call, and it would pin the local +cpu build)
PIP_REQUIREMENTS_PACKAGES = ("torch", "numpy", "safetensors")
PYFUNC_PACKAGES = ("mlflow", "pandas", "pyarrow")  # and lifelong itself, from the serving environment


def digests(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory``, keyed by its relative POSIX path."""
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def upload_state(client: MlflowClient, run_id: str, state: LearnerState) -> dict[str, str]:
    """``save_state`` into a temporary folder, upload it as ``state/``; return the file digests."""
    from lifelong.learn.state import save_state

    with tempfile.TemporaryDirectory(prefix="lifelong-state-") as tmp:
        folder = Path(tmp) / STATE_DIR
        save_state(state, folder)
        manifest = digests(folder)
        client.log_artifacts(run_id, str(folder), STATE_DIR)
    client.set_tag(run_id, "state_sha256", json.dumps(manifest, sort_keys=True))
    # write-once: the tracking store refuses to change a logged param (see the module docstring)
    client.log_param(run_id, MANIFEST_PARAM, manifest_digest(manifest))
    return manifest


def manifest_digest(manifest: dict[str, str]) -> str:
    """sha256 of the manifest as canonical JSON (sorted keys, no spaces).

    >>> manifest_digest({"b": "2", "a": "1"}) == manifest_digest({"a": "1", "b": "2"})
    True
    """
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_safetensors(path: Path) -> None:
    """Refuse anything but a safetensors file (8-byte header length, then a JSON header) before parsing it."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= length <= min(size - 8, 100_000_000):
            raise StateError(f"{path.name}: not a safetensors file (refused; nothing was unpickled)")
        try:
            header = json.loads(fh.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise StateError(f"{path.name}: not a safetensors file (refused; nothing was unpickled)") from None
    if not isinstance(header, dict):
        raise StateError(f"{path.name}: not a safetensors file (refused; nothing was unpickled)")


def verify_state(folder: Path, manifest: dict[str, str], where: str) -> None:
    """The downloaded state is exactly what was uploaded, and every tensor file is safetensors."""
    found = digests(folder)
    if set(found) != set(manifest):
        missing, extra = sorted(set(manifest) - set(found)), sorted(set(found) - set(manifest))
        raise StateError(f"{where}: state files differ from the manifest (missing {missing}, unexpected {extra})")
    for name, digest in manifest.items():
        if found[name] != digest:
            raise StateError(f"{where}: {name} does not match its recorded sha256 (tampered or corrupt)")
    for name in manifest:
        if name.endswith(".safetensors"):
            check_safetensors(folder / name)


def download_state(
    client: MlflowClient,
    run_id: str,
    arch: ArchitectureSpec | None,
    where: str,
    *,
    not_after: date | None = None,
) -> LearnerState:
    """Download ``state/`` of a complete run, verify it, and rebuild the LearnerState from it.

    The manifest tag must hash to the run's write-once ``state_manifest_sha256`` param, the
    listed files must match it by name before anything is downloaded and stay under
    :data:`MAX_STATE_BYTES`; then :func:`verify_state` and ``load_state`` (which bounds and
    validates everything else, ``arch`` and ``not_after`` included).
    """
    from lifelong.learn.state import load_state

    run = client.get_run(run_id)
    if run.data.tags.get("artifacts_complete") != "true":
        raise RegistryError(f"{where}: its artifacts are incomplete (a crashed upload); refusing to load it")
    try:
        manifest = json.loads(run.data.tags["state_sha256"])
    except (KeyError, json.JSONDecodeError):
        raise StateError(f"{where}: no state manifest on run {run_id}") from None
    if not isinstance(manifest, dict) or not all(isinstance(v, str) for v in manifest.values()):
        raise StateError(f"{where}: the state manifest of run {run_id} is not a mapping of digests")
    recorded = run.data.params.get(MANIFEST_PARAM)
    if recorded is None:
        raise StateError(f"{where}: run {run_id} has no write-once {MANIFEST_PARAM} param; refusing its state")
    if manifest_digest(manifest) != recorded:
        raise StateError(
            f"{where}: the state manifest tag of run {run_id} does not match its {MANIFEST_PARAM} param "
            "(the tag was changed after the state was logged); refusing to load it"
        )
    listed = {Path(f.path).name: f.file_size or 0 for f in client.list_artifacts(run_id, STATE_DIR) if not f.is_dir}
    if set(listed) != set(manifest) or sum(listed.values()) > MAX_STATE_BYTES:
        raise StateError(
            f"{where}: state files {sorted(listed)} ({sum(listed.values())} bytes) differ from the manifest "
            f"{sorted(manifest)} or exceed {MAX_STATE_BYTES} bytes; refused before download"
        )
    with tempfile.TemporaryDirectory(prefix="lifelong-state-") as tmp:
        folder = Path(client.download_artifacts(run_id, STATE_DIR, tmp))
        verify_state(folder, manifest, where)
        return load_state(folder, arch=arch, not_after=not_after)


# what MLflow allows in a param name: alphanumerics, _ - . space : /
_PARAM_NAME_REFUSED = re.compile(r"[^A-Za-z0-9_\-. :/]")


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested params as dotted keys; a character MLflow refuses in a name (a gate key's glob ``*``)
    becomes ``_``.

    >>> flatten({"model": {"train": {"lr": 0.1}}, "days": ["a", "b"]})
    {'model.train.lr': '0.1', 'days': '["a", "b"]'}
    >>> flatten({"change": {"task_mae/*": {"max_increase_pct": 10.0}}})
    {'change.task_mae/_.max_increase_pct': '10.0'}
    """
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{_PARAM_NAME_REFUSED.sub('_', str(key))}."))
        return out
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return {prefix.rstrip("."): text[:6000]}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def log_run_data(
    client: MlflowClient, run_id: str, params: dict, metrics: dict[str, float], epochs: list[dict] | None = None
) -> None:
    """Params (flattened), final metrics (step 0) and per-epoch metrics (step = epoch), in few batches."""
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    items = [Param(k, v) for k, v in flatten(params).items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])
    points = [Metric(k, float(v), now, 0) for k, v in metrics.items() if _number(v)]
    for i, record in enumerate(epochs or []):
        step = int(record.get("epoch", i))
        points += [Metric(k, float(v), now, step) for k, v in record.items() if k != "epoch" and _number(v)]
    for start in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[start : start + 1000])


def pip_requirements(packages: tuple[str, ...] = PIP_REQUIREMENTS_PACKAGES) -> list[str]:
    """Pinned to the installed versions without local build tags (PyPI has no ``torch==2.13.0+cpu``)."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in packages]


def log_model(state: LearnerState, input_example: np.ndarray | pd.DataFrame, dataset: DatasetSpec | None = None) -> Any:
    """The serving copy of the model, with signature and example: a pyfunc on the raw frame for a day-ahead
    forecaster or a classifier (``input_example`` a DataFrame, ``dataset`` its data set), else pt2
    (torch.export, no pickle).

    A pt2 example is tiled to a batch of two: torch.export turns a size-1 batch into a constant.
    """
    import pandas as pd

    if isinstance(input_example, pd.DataFrame):
        assert dataset is not None, "a pyfunc forecaster needs its data set's spec"
        return log_pyfunc(state, input_example, dataset)
    import mlflow
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    example = np.asarray(input_example, dtype=np.float32)
    if example.shape[0] < 2:
        example = np.concatenate([example, example])
    model = copy.deepcopy(state.model).to("cpu").eval()
    with torch.no_grad():
        output = model(torch.from_numpy(example)).numpy()
    return mlflow.pytorch.log_model(
        model,
        name=MODEL_DIR,
        signature=infer_signature(example, output),
        input_example=example,
        pip_requirements=pip_requirements(),
        serialization_format="pt2",
        # pt2 ignores extra kwargs; skipping MLflow's reload-and-predict check saves a model load per call
        validate_serving_input=False,
    )


def log_pyfunc(state: LearnerState, input_example: pd.DataFrame, dataset: DatasetSpec) -> Any:
    """The model as a pyfunc (:mod:`lifelong.serving`): weights and JSON specs as artifacts, models from code."""
    import mlflow
    from mlflow.models import infer_signature

    from lifelong import serving

    model = copy.deepcopy(state.model).to("cpu").eval()
    output = serving.predict(model, state.arch, dataset, state.stats, input_example)
    with tempfile.TemporaryDirectory(prefix="lifelong-pyfunc-") as tmp:
        files = serving.save_model_files(model, state.arch, dataset, state.stats, Path(tmp))
        return mlflow.pyfunc.log_model(
            name=MODEL_DIR,
            python_model=str(serving.ENTRY),
            artifacts=files,
            signature=infer_signature(input_example, output),
            input_example=input_example,
            pip_requirements=pip_requirements(PIP_REQUIREMENTS_PACKAGES + PYFUNC_PACKAGES),
        )


class ServingCheckFailed(RegistryError):
    """The logged serving model cannot be loaded, or does not answer its input example as its signature says."""


def check_serving_model(model_uri: str, *, source: str | None = None) -> None:
    """Load ``model_uri`` with ``mlflow.pyfunc`` and predict its input example; raise if it does not serve.

    What a serving endpoint would do first: the prediction must have one row per example row,
    the shape the signature declares for the rest, and only finite values. ``source``: where the
    files are downloaded from when the caller resolved ``model_uri`` already (a registered version's
    download URI, :func:`lifelong.registry.check_serving`); the messages still name ``model_uri``.
    """
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import Model

    # MLflow 3 refuses pickle payloads when loading (a cloudpickled python_model, or a pt2 archive
    # whose records torch's weights_only unpickler would not admit) unless this variable allows them:
    # it is pinned off for the load, so nothing read from the store is unpickled here either
    pinned = os.environ.get(NO_PICKLE_ENV)
    os.environ[NO_PICKLE_ENV] = "false"
    with tempfile.TemporaryDirectory(prefix="lifelong-serving-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(source or model_uri, dst_path=tmp)
            example = Model.load(local).load_input_example(local)
            loaded = mlflow.pyfunc.load_model(local)
            if example is None:
                raise ServingCheckFailed(f"serving check of {model_uri}: the logged model has no input example")
            prediction = loaded.predict(example)
        except ServingCheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever loading or predicting raises is the reason
            detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise ServingCheckFailed(
                f"serving check of {model_uri}: the logged model cannot be loaded or run "
                f"({type(exc).__name__}: {detail})"
            ) from None
        finally:
            if pinned is None:
                os.environ.pop(NO_PICKLE_ENV, None)
            else:
                os.environ[NO_PICKLE_ENV] = pinned
    if isinstance(prediction, pd.DataFrame):  # a pyfunc: a frame in (a day's rows, recordings), a frame out
        output = prediction.select_dtypes("number").to_numpy(dtype=np.float64)
        if not len(prediction) or not output.size:
            raise ServingCheckFailed(f"serving check of {model_uri}: no numbers out for its input example")
    else:  # tensors in, tensors out: one row per example row, in the shape the signature declares
        output, rows = np.asarray(prediction), np.asarray(example).shape[0]
        declared = _declared_output_shape(loaded)
        expected = (rows, *declared[1:]) if declared else None
        if output.ndim == 0 or output.shape[0] != rows or (expected is not None and output.shape != expected):
            raise ServingCheckFailed(
                f"serving check of {model_uri}: output of shape {output.shape} for {rows} example rows "
                f"(the signature says {expected})"
            )
    if not np.issubdtype(output.dtype, np.number) or not np.isfinite(output).all():
        raise ServingCheckFailed(f"serving check of {model_uri}: the output on its input example is not finite")


def _declared_output_shape(loaded: Any) -> tuple[int, ...] | None:
    """The output tensor shape of the model's signature (-1 for the batch), if it declares one."""
    signature = getattr(loaded.metadata, "signature", None)
    outputs = getattr(signature, "outputs", None)
    inputs = getattr(outputs, "inputs", None) or []
    shape = getattr(inputs[0], "shape", None) if len(inputs) == 1 else None
    return tuple(shape) if shape else None


def log_dataset(name: str, data_version: str, source: str, context: str) -> None:
    """The training data as a dataset input of the active run (digest: the data version, at most 36 chars)."""
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset

    dataset = MetaDataset(_dvc_source(source), name=name, digest=data_version[:36])
    mlflow.log_input(dataset, context=context, tags={"data_version": data_version[:500]})


def _dvc_source(uri: str) -> Any:
    """An MLflow dataset source of type ``dvc`` (defined on first use: mlflow is imported lazily)."""
    global _DVCSource
    if _DVCSource is None:
        from mlflow.data.dataset_source import DatasetSource

        class DVCDatasetSource(DatasetSource):
            """Training data kept by DVC; restore it with ``lifelong data checkout <data_version>``."""

            def __init__(self, uri: str) -> None:
                self.uri = uri

            @staticmethod
            def _get_source_type() -> str:
                return "dvc"

            def load(self) -> Any:
                raise NotImplementedError("restore DVC data with `lifelong data checkout`")

            @staticmethod
            def _can_resolve(raw_source: Any) -> bool:
                return isinstance(raw_source, str) and raw_source.startswith("dvc://")

            @classmethod
            def _resolve(cls, raw_source: Any) -> DVCDatasetSource:
                return cls(raw_source)

            def to_dict(self) -> dict[str, Any]:
                return {"uri": self.uri}

            @classmethod
            def from_dict(cls, source_dict: dict[Any, Any]) -> DVCDatasetSource:
                return cls(source_dict["uri"])

        _DVCSource = DVCDatasetSource
    return _DVCSource(uri)


_DVCSource: Any = None
