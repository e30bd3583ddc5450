"""A classifier's registered model is a pyfunc: recordings in, class labels and probabilities out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from _registry_kit import STRATEGY, TRAIN


def test_a_classifier_serves_labels_and_probabilities(store) -> None:
    import mlflow

    from lifelong import registry, serving
    from lifelong.config import ArchitectureSpec, DatasetSpec, load_settings
    from lifelong.learn.state import LearnerState

    arch = ArchitectureSpec(type="mlp_classifier", in_channels=1, length=16, out_dim=3, hidden=(8,))
    ds = DatasetSpec(name="toy", kind="classify", loader="toy.csv", features=("signal",), label="y", labels=(0, 2, 5))
    torch.manual_seed(0)
    state = LearnerState.new(arch, TRAIN, STRATEGY)
    rng = np.random.default_rng(0)
    recordings = pd.DataFrame({"signal": [rng.normal(size=16) for _ in range(4)], "y": [0, 2, 5, 0]})
    example = serving.classify_example(ds, recordings)
    cand = registry.log_candidate(
        "toy_classifier", state, params={}, metrics={}, epoch_metrics=[], plots={},
        lineage=registry.Lineage("toy", "md5-toy", "abc", "0123abcd", "cpu"),
        dataset_source="dvc://local/data/toy", input_example=example, run_key="toy/1", dataset=ds,
    )  # fmt: skip
    mlflow.set_tracking_uri(load_settings().mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/toy_classifier/{cand.version}")
    answer = model.predict(serving.classify_example(ds, recordings, rows=4))
    assert list(answer.columns) == ["label", "p_0", "p_2", "p_5"]
    with torch.no_grad():
        x = torch.from_numpy(np.stack(recordings["signal"].to_numpy()).astype(np.float32))[:, None, :]
        probs = torch.softmax(state.model.eval()(x), dim=1).numpy()
    np.testing.assert_allclose(answer[["p_0", "p_2", "p_5"]].to_numpy(), probs, rtol=1e-5)
    assert list(answer["label"]) == [(0, 2, 5)[i] for i in probs.argmax(axis=1)]
    assert np.allclose(answer[["p_0", "p_2", "p_5"]].sum(axis=1), 1.0)
