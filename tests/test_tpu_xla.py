"""tpu_xla plugin: TPU detection, options, target listing, the torchax shim and the torch_xla fallback."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest

from accelnas.core.errors import AccelnasError
from accelnas.core.plugins import load_registry
from accelnas.core.records import MeasureSettings
from accelnas.plugins.tpu_xla import detect
from accelnas.plugins.tpu_xla.detect import ALLOW_CPU_ENV, XlaPlatformError, paper_batch, require_platform, scan_pci
from accelnas.plugins.tpu_xla.options import XlaOptionError, parse_options, split_batch


def _pci(root: Path, slot: str, vendor: str, device: str) -> None:
    path = root / slot
    path.mkdir(parents=True)
    (path / "vendor").write_text(vendor + "\n")
    (path / "device").write_text(device + "\n")


def test_scan_pci_counts_google_tpu_chips(tmp_path):
    _pci(tmp_path, "0000:00:04.0", "0x1ae0", "0x005e")
    _pci(tmp_path, "0000:00:05.0", "0x1ae0", "0x005e")
    _pci(tmp_path, "0000:00:06.0", "0x10de", "0x005e")  # same device id, another vendor
    _pci(tmp_path, "0000:00:07.0", "0x1ae0", "0x1234")  # a Google device that is no TPU
    host = scan_pci(tmp_path)
    assert host.present and host.chips == 2 and host.kind == "TPU v4"
    assert not scan_pci(tmp_path / "missing").present


def test_v2_v3_share_a_pci_id_resolved_by_accelerator_type(tmp_path, monkeypatch):
    _pci(tmp_path, "0000:00:04.0", "0x1ae0", "0x0027")
    monkeypatch.delenv("TPU_ACCELERATOR_TYPE", raising=False)
    monkeypatch.delenv("ACCELERATOR_TYPE", raising=False)
    monkeypatch.setattr(detect, "_metadata_accelerator_type", lambda: None)
    assert scan_pci(tmp_path).kind == "TPU v2 or v3"
    monkeypatch.setattr(detect, "_metadata_accelerator_type", lambda: "v2-8")  # a TPU VM's metadata server
    assert scan_pci(tmp_path).kind == "TPU v2"
    monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v2-8")
    assert scan_pci(tmp_path).kind == "TPU v2"
    monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v3-32")
    assert scan_pci(tmp_path).kind == "TPU v3"


def test_the_metadata_server_is_asked_with_googles_header_and_a_short_timeout(monkeypatch):
    asked = []

    class Answer:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, size):
            return b"v3-8"

    def urlopen(request, timeout):
        asked.append((request.full_url, request.get_header("Metadata-flavor"), timeout))
        return Answer()

    monkeypatch.setattr(detect.urllib.request, "urlopen", urlopen)
    assert detect._metadata_accelerator_type.__wrapped__() == "v3-8"
    assert asked == [(detect.METADATA_URL, "Google", detect.METADATA_TIMEOUT_S)]

    def unreachable(request, timeout):
        raise detect.urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(detect.urllib.request, "urlopen", unreachable)
    assert detect._metadata_accelerator_type.__wrapped__() is None


def test_paper_batch_by_device_kind():
    assert paper_batch("TPU v2") == 64
    assert paper_batch("TPU v3") == 128
    assert paper_batch("TPU v5 lite") == 128
    assert paper_batch("TPU v2 or v3") == 128
    assert paper_batch("cpu") == paper_batch(None) == detect.CPU_BATCH < 64


def test_cpu_platform_needs_the_switch(monkeypatch):
    monkeypatch.delenv(ALLOW_CPU_ENV, raising=False)
    with pytest.raises(XlaPlatformError, match=ALLOW_CPU_ENV):
        require_platform("cpu")
    require_platform("tpu")
    monkeypatch.setenv(ALLOW_CPU_ENV, "1")
    require_platform("cpu")
    monkeypatch.setenv(ALLOW_CPU_ENV, "0")
    with pytest.raises(AccelnasError):
        require_platform("cpu")


def test_options_are_validated():
    assert parse_options(MeasureSettings()).dtype == "float32"
    opts = parse_options(MeasureSettings(options=(("devices", "all"), ("dtype", "bf16"))))
    assert opts.bf16 and opts.all_devices
    with pytest.raises(XlaOptionError, match="dtype"):
        parse_options(MeasureSettings(options=(("dtype", "int8"),)))
    with pytest.raises(XlaOptionError, match="devices"):
        parse_options(MeasureSettings(options=(("devices", 3),)))
    assert split_batch(128, 8) == 16
    with pytest.raises(XlaOptionError, match="evenly"):
        split_batch(6, 4)


def _targets(monkeypatch, allow: bool, root: Path | None = None) -> dict:
    if allow:
        monkeypatch.setenv(ALLOW_CPU_ENV, "1")
    else:
        monkeypatch.delenv(ALLOW_CPU_ENV, raising=False)
    if root is not None:
        monkeypatch.setattr(detect, "PCI_ROOT", root)
    return load_registry(["tpu_xla"], use_env=False).targets()


def test_listing_without_tpu(monkeypatch, tmp_path):
    targets = _targets(monkeypatch, allow=False, root=tmp_path)
    assert set(targets) == {"tpu/jax", "tpu/tensorflow", "tpu/torch_xla"}
    jax_target = targets["tpu/jax"]
    assert not jax_target.available and ALLOW_CPU_ENV in jax_target.reason
    assert jax_target.kind == "tpu" and jax_target.plugin == "tpu_xla"

    targets = _targets(monkeypatch, allow=True, root=tmp_path)
    for name in ("tpu/jax", "tpu/tensorflow"):
        assert targets[name].available, targets[name].reason
        assert "CPU platform" in targets[name].description
        assert targets[name].default_batch_size == detect.CPU_BATCH


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed")
def test_a_keras_backend_other_than_tensorflow_makes_tpu_tensorflow_unavailable(monkeypatch, tmp_path):
    """KERAS_BACKEND=jax (common on TPU VMs) used to fail every architecture of a campaign at export."""
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    targets = _targets(monkeypatch, allow=True, root=tmp_path)
    assert targets["tpu/jax"].available
    tf = targets["tpu/tensorflow"]
    assert (
        not tf.available and tf.reason == "tpu/tensorflow needs Keras' TensorFlow backend, but KERAS_BACKEND is 'jax'"
    )
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert _targets(monkeypatch, allow=True, root=tmp_path)["tpu/tensorflow"].available


def test_results_on_the_cpu_platform_never_share_a_key_with_a_tpus(monkeypatch, tmp_path):
    cpu = _targets(monkeypatch, allow=True, root=tmp_path / "none")["tpu/jax"]
    for i in range(4):
        _pci(tmp_path, f"0000:00:0{i}.0", "0x1ae0", "0x005e")
    tpu = _targets(monkeypatch, allow=True, root=tmp_path)["tpu/jax"]
    settings = MeasureSettings(batch_size=128)  # one batch on both, as an explicit --batch-size gives
    assert tpu.protocol is None and cpu.protocol == "XLA CPU platform"
    assert settings.key(cpu) != settings.key(tpu)


def test_listing_with_a_tpu_uses_the_paper_batch(monkeypatch, tmp_path):
    for i in range(4):
        _pci(tmp_path, f"0000:00:0{i}.0", "0x1ae0", "0x0027")
    monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v2-8")
    targets = _targets(monkeypatch, allow=False, root=tmp_path)
    jax_target = targets["tpu/jax"]
    assert jax_target.available and jax_target.default_batch_size == 64
    assert "4 x TPU v2" in jax_target.description


@pytest.mark.skipif(importlib.util.find_spec("torch_xla") is not None, reason="torch_xla is installed here")
def test_torch_xla_is_unavailable_with_the_reason(monkeypatch):
    target = _targets(monkeypatch, allow=True)["tpu/torch_xla"]
    assert not target.available
    assert "torch_xla is not installed" in target.reason and "older torch" in target.reason


def test_torch_xla_sync_falls_back_to_mark_step():
    from accelnas.plugins.tpu_xla.torch_xla_backend import sync

    calls: list[str] = []
    old_xm = types.SimpleNamespace(
        mark_step=lambda: calls.append("mark_step"), wait_device_ops=lambda: calls.append("wait")
    )
    sync(types.SimpleNamespace(), old_xm)  # a release without torch_xla.sync
    assert calls == ["mark_step", "wait"]
    calls.clear()
    sync(types.SimpleNamespace(sync=lambda wait=False: calls.append(f"sync(wait={wait})")), old_xm)
    assert calls == ["sync(wait=True)"]


def test_a_runtime_device_with_another_paper_batch_warns_only_for_the_listed_batch(caplog):
    from accelnas.core.records import MeasureSettings, Target
    from accelnas.plugins.tpu_xla.program import batch_for

    target = Target("tpu", "jax", default_batch_size=128)  # listed as a v3 by its PCI id
    program = types.SimpleNamespace(default_batch=lambda: 64, device_kind="TPU v2")  # the runtime says v2
    with caplog.at_level("WARNING"):
        assert batch_for(target, program, MeasureSettings(batch_size=128)) == 128  # as a campaign resolves it
        assert "the paper's batch for TPU v2 is 64" in caplog.text
        caplog.clear()
        assert batch_for(target, program, MeasureSettings(batch_size=32)) == 32  # a batch the user chose
        assert not caplog.text


def test_torch_xla_device_falls_back_to_xla_device():
    from accelnas.plugins.tpu_xla.torch_xla_backend import device_of

    old_xm = types.SimpleNamespace(xla_device=lambda: "xla:0 (xm)")
    assert device_of(types.SimpleNamespace(), old_xm) == "xla:0 (xm)"  # a release before torch_xla.device()
    assert device_of(types.SimpleNamespace(device=lambda: "xla:0"), old_xm) == "xla:0"


def test_torchax_shim_only_fills_missing_overloads():
    import torch

    from accelnas.plugins.tpu_xla.torchax_compat import (
        REMOVED_OVERLOADS,
        RemovedOverload,
        import_torchax,
        install_overload_placeholders,
    )

    real = torch.ops.aten.prod.dim_int
    install_overload_placeholders()
    assert install_overload_placeholders() == []  # idempotent: nothing is missing any more
    assert torch.ops.aten.prod.dim_int is real
    for op, overload in REMOVED_OVERLOADS:
        value = getattr(getattr(torch.ops.aten, op), overload)
        assert isinstance(value, (RemovedOverload, torch._ops.OpOverload))
        if isinstance(value, RemovedOverload):
            with pytest.raises(NotImplementedError, match=f"{op}.{overload}"):
                value()
    torchax = import_torchax()
    assert torchax.default_env() is not None
