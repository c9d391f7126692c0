"""ONNX export: the TorchScript exporter, and the dynamo exporter where a torch build lacks the former."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from accelnas.core.model import build_model
from accelnas.core.space import sample
from accelnas.plugins.cpu_ort.plugin import export_onnx

SIZE = 32


def _outputs(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_export_has_a_dynamic_batch_and_matches_the_model(tmp_path, monkeypatch, exporter):
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
        original = torch.onnx.export

        def without_torchscript(*args, dynamo=True, **kwargs):
            if not dynamo:
                raise NotImplementedError("the TorchScript exporter was removed")
            return original(*args, dynamo=dynamo, **kwargs)

        monkeypatch.setattr(torch.onnx, "export", without_torchscript)
    model = build_model(sample(1, 21)[0]).eval()
    path = export_onnx(model, tmp_path / "net.onnx", SIZE)
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        got = _outputs(path, x)
        assert got.shape == (batch, 1000)
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
