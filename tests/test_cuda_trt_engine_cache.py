"""TensorRT engine cache: keys, round trips, corrupt entries (rebuilt, never crashed on), cache directory."""

import dataclasses
import json
from pathlib import Path

import pytest

from accelnas.core.model import build_model
from accelnas.core.space import sample
from accelnas.plugins.cpu_ort.plugin import export_onnx
from accelnas.plugins.cuda_trt.engine_cache import (
    ENV_VAR,
    EngineCache,
    EngineKey,
    batch_profile,
    default_cache_dir,
    onnx_graph_digest,
)

KEY = EngineKey(
    arch_id="4321-6521-6530-6331-6531-6541-6311",
    precision="fp16",
    batch_profile=(1, 256),
    input_size=224,
    tensorrt_version="10.13.0.35",
    gpu_name="NVIDIA H100 80GB HBM3",
    compute_capability="9.0",
)
ENGINE = bytes(range(256)) * 40


def test_key_digest_is_stable_and_changes_with_every_field():
    assert KEY.digest == dataclasses.replace(KEY).digest and len(KEY.digest) == 24
    changes = {
        "arch_id": "1311-6321-6521-6331-6531-6541-6311",
        "precision": "fp32",
        "batch_profile": (1, 128),
        "input_size": 192,
        "tensorrt_version": "11.0.0.1",
        "gpu_name": "NVIDIA A100-SXM4-40GB",
        "compute_capability": "8.0",
        "opt_level": 5,
        "workspace_mib": 4096,
        "graph_digest": "0123456789abcdef01234567",
    }
    assert set(changes) == {f.name for f in dataclasses.fields(EngineKey)}
    digests = {dataclasses.replace(KEY, **{name: value}).digest for name, value in changes.items()}
    assert len(digests) == len(changes) and KEY.digest not in digests
    assert json.loads(json.dumps(KEY.to_dict()))["batch_profile"] == [1, 256]


def test_timing_cache_is_shared_across_architectures_but_not_gpus_or_versions():
    other_arch = dataclasses.replace(KEY, arch_id="1321-6330-4530-1531-4310-6510-1320", precision="fp32")
    assert other_arch.timing_cache_name == KEY.timing_cache_name
    assert KEY.timing_cache_name == "timing-nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35.cache"
    assert dataclasses.replace(KEY, gpu_name="NVIDIA L4").timing_cache_name != KEY.timing_cache_name
    assert dataclasses.replace(KEY, tensorrt_version="11.1").timing_cache_name != KEY.timing_cache_name


@pytest.mark.parametrize("profile", [(), (0, 4), (4, 1), (1, 1)])
def test_batch_profile_must_be_positive_ascending_unique(profile):
    with pytest.raises(ValueError, match="batch profile"):
        dataclasses.replace(KEY, batch_profile=profile)


def test_profile_holds_the_latency_and_throughput_batches():
    assert batch_profile(256) == (1, 256)
    assert batch_profile(1) == (1,)


def test_round_trip_and_miss(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    assert cache.load(KEY) is None
    path = cache.store(KEY, ENGINE, {"build_seconds": 12.5})
    assert path.exists() and cache.load(KEY) == ENGINE
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["key"] == KEY.to_dict() and meta["bytes"] == len(ENGINE) and meta["info"]["build_seconds"] == 12.5
    assert cache.load(dataclasses.replace(KEY, precision="fp32")) is None
    assert not list((tmp_path / "engines").glob("*.tmp"))


def _corrupt_engine(engine: Path, meta: Path) -> None:
    engine.write_bytes(ENGINE[:-7] + b"garbage")


def _truncate_engine(engine: Path, meta: Path) -> None:
    engine.write_bytes(ENGINE[:100])


def _broken_metadata(engine: Path, meta: Path) -> None:
    meta.write_text("{ not json")


def _other_key(engine: Path, meta: Path) -> None:
    data = json.loads(meta.read_text())
    data["key"]["gpu_name"] = "something else"
    meta.write_text(json.dumps(data))


def _engine_missing(engine: Path, meta: Path) -> None:
    engine.unlink()


def _metadata_missing(engine: Path, meta: Path) -> None:
    meta.unlink()


@pytest.mark.parametrize(
    "damage", [_corrupt_engine, _truncate_engine, _broken_metadata, _other_key, _engine_missing, _metadata_missing]
)
def test_corrupt_entries_are_removed_and_reported_as_misses(tmp_path, damage, caplog):
    cache = EngineCache(tmp_path)
    engine, meta = cache.paths(KEY)
    cache.store(KEY, ENGINE)
    damage(engine, meta)
    assert cache.load(KEY) is None
    assert "corrupt" in caplog.text and "rebuilt" in caplog.text
    assert not engine.exists() and not meta.exists()
    cache.store(KEY, ENGINE)  # the rebuilt engine is stored again
    assert cache.load(KEY) == ENGINE


def test_timing_cache_files(tmp_path):
    cache = EngineCache(tmp_path)
    assert cache.load_timing_cache(KEY) == b""
    cache.store_timing_cache(KEY, b"tactics")
    assert cache.load_timing_cache(dataclasses.replace(KEY, arch_id="other")) == b"tactics"
    cache.drop_timing_cache(KEY)
    assert cache.load_timing_cache(KEY) == b""


def test_disabled_cache_stores_nothing(tmp_path):
    cache = EngineCache(None)
    assert not cache.enabled
    assert cache.store(KEY, ENGINE) is None and cache.load(KEY) is None
    cache.store_timing_cache(KEY, b"x")
    assert cache.load_timing_cache(KEY) == b""


def test_cache_directory_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "trt"))
    assert default_cache_dir() == tmp_path / "trt"
    for off in ("off", "none", ""):
        monkeypatch.setenv(ENV_VAR, off)
        assert default_cache_dir() is None
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "accelnas" / "tensorrt"


def test_graph_digest_follows_the_network_not_its_weights(tmp_path):
    """Two exports of one architecture (different random weights) share a digest; another network does not."""
    import torch

    one, other = sample(2, 31)
    digests = {}
    for name, arch, seed in (("a", one, 0), ("a_again", one, 1), ("b", other, 0)):
        torch.manual_seed(seed)
        digests[name] = onnx_graph_digest(export_onnx(build_model(arch).eval(), tmp_path / f"{name}.onnx", 32))
    assert (tmp_path / "a.onnx").read_bytes() != (tmp_path / "a_again.onnx").read_bytes()
    assert digests["a"] == digests["a_again"] != digests["b"]
    assert len(digests["a"]) == 24
    fp16 = pytest.importorskip("onnxconverter_common.float16")
    import onnx

    half = fp16.convert_float_to_float16(onnx.load(str(tmp_path / "a.onnx")), keep_io_types=True)
    onnx.save(half, str(tmp_path / "a.fp16.onnx"))
    assert onnx_graph_digest(tmp_path / "a.fp16.onnx") not in digests.values()


def test_unwritable_cache_is_logged_and_the_engine_still_used(tmp_path, caplog):
    root = tmp_path / "cache"
    root.write_text("a file where the cache folder should be")
    cache = EngineCache(root)
    assert cache.store(KEY, ENGINE) is None
    cache.store_timing_cache(KEY, b"tactics")
    assert "could not cache the engine" in caplog.text and "could not save the timing cache" in caplog.text
    assert cache.load(KEY) is None and cache.load_timing_cache(KEY) == b""


def test_a_cache_folder_this_user_may_not_enter_is_a_miss(tmp_path, monkeypatch, caplog):
    root = tmp_path / "cache"
    cache = EngineCache(root)
    cache.store(KEY, ENGINE)

    def refusing(method):  # what a folder without search permission answers (root enters any)
        def call(self, *args, **kwargs):
            if self.parent == root:
                raise PermissionError(13, "Permission denied", str(self))
            return method(self, *args, **kwargs)

        return call

    for name in ("exists", "stat", "read_bytes", "read_text"):
        monkeypatch.setattr(Path, name, refusing(getattr(Path, name)))
    assert cache.load(KEY) is None
    assert "is unreadable ([Errno 13] Permission denied" in caplog.text


def test_compile_engine_measures_a_built_engine_it_cannot_cache(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from accelnas.core.records import ExportedModel, MeasureSettings
    from accelnas.plugins.cuda_trt import tensorrt_backend
    from accelnas.plugins.cuda_trt.options import GpuOptions

    monkeypatch.setattr(tensorrt_backend, "import_tensorrt", lambda: SimpleNamespace(__version__="10.13.0.35"))
    monkeypatch.setattr(tensorrt_backend, "require_cuda", lambda device: None)
    monkeypatch.setattr(tensorrt_backend, "device_identity", lambda device: ("NVIDIA H100 80GB HBM3", "9.0"))
    monkeypatch.setattr(tensorrt_backend, "build_engine", lambda path, key, cache: (ENGINE, {"build_seconds": 1.0}))
    monkeypatch.setattr(tensorrt_backend.TrtRunner, "load", classmethod(lambda cls, data, *args: ("runner", data)))
    exported = ExportedModel(format="onnx", path=tmp_path / "a.onnx", info={"arch_id": KEY.arch_id})
    root = tmp_path / "cache"
    root.write_text("not a folder")

    compiled = tensorrt_backend.compile_engine(
        exported, MeasureSettings(), GpuOptions(backend="tensorrt"), EngineCache(root), 256
    )
    assert compiled.handle == ("runner", ENGINE)
    assert compiled.info["engine_cache"] == "miss (not stored)"
    writable = tensorrt_backend.compile_engine(
        exported, MeasureSettings(), GpuOptions(backend="tensorrt"), EngineCache(tmp_path / "ok"), 256
    )
    assert writable.info["engine_cache"] == "miss"
