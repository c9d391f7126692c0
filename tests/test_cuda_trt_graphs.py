"""CUDA graph capture of a TensorRT inference: a capture that fails falls back to plain enqueues."""

from __future__ import annotations

import contextlib

import pytest
import torch

from accelnas.plugins.cuda_trt.errors import EngineBuildError
from accelnas.plugins.cuda_trt.trt_engine import (
    BoundContext,
    TrtRunner,
    _ended_out_of_memory,
    _first_error,
    _set_profile,
)


class FakeStream:
    cuda_stream = 0

    def synchronize(self) -> None:
        pass


class FakeContext:
    """An execution context whose ``execute_async_v3`` answers from a script (then True)."""

    def __init__(self, answers: list[bool]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def execute_async_v3(self, stream: int) -> bool:
        self.calls += 1
        return self.answers.pop(0) if self.answers else True


class FakeGraph:
    def __init__(self) -> None:
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1


@pytest.fixture
def fake_graphs(monkeypatch):
    """torch.cuda.CUDAGraph and torch.cuda.graph without a GPU; ``fail`` makes capture raise."""
    state = {"fail": None, "captures": 0}

    @contextlib.contextmanager
    def graph(g, stream=None, capture_error_mode=None):
        state["captures"] += 1
        if state["fail"]:
            raise RuntimeError(state["fail"])
        yield g

    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    return state


def _runner(context: FakeContext) -> TrtRunner:
    return TrtRunner(engine=None, stream=FakeStream(), device=0, contexts={4: BoundContext(4, context, {})},
                     cuda_graphs=True)  # fmt: skip


def test_captured_graph_is_replayed(fake_graphs):
    context = FakeContext([])
    runner = _runner(context)
    run = runner.enqueue(4)
    run()
    assert isinstance(runner.contexts[4].graph, FakeGraph) and runner.contexts[4].graph.replays == 1
    assert context.calls == 2 and not runner.notes  # one flush, one captured enqueue


@pytest.mark.parametrize("failure", ["tensorrt", "cuda"])
def test_failed_capture_falls_back_to_plain_enqueues(fake_graphs, failure):
    context = FakeContext([True, False] if failure == "tensorrt" else [])
    if failure == "cuda":
        fake_graphs["fail"] = "operation not permitted when stream is capturing"
    runner = _runner(context)
    run = runner.enqueue(4)
    assert runner.contexts[4].graph is None
    reason = "execute_async_v3 failed at batch 4" if failure == "tensorrt" else "operation not permitted"
    assert reason in runner.notes["cuda_graph_batch_4"]
    calls = context.calls
    run()
    assert context.calls == calls + 1  # the inference itself is enqueued, without a graph


def test_inference_that_fails_before_capture_is_an_error(fake_graphs):
    runner = _runner(FakeContext([False]))
    with pytest.raises(EngineBuildError, match="execute_async_v3 failed at batch 4"):
        runner.enqueue(4)
    assert fake_graphs["captures"] == 0 and not runner.notes


class ProfileContext:
    def __init__(self, outcome):
        self.outcome = outcome

    def set_optimization_profile_async(self, index, stream):
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


@pytest.mark.parametrize("outcome", [False, RuntimeError("Error in set optimization profile async.")])
def test_a_refused_profile_is_an_engine_error(outcome):
    with pytest.raises(EngineBuildError, match="refused optimization profile 1 \\(batch 256\\)"):
        _set_profile(ProfileContext(outcome), 1, 256, FakeStream())
    _set_profile(ProfileContext(True), 1, 256, FakeStream())


def test_build_errors_report_first_and_last_and_classify_memory_by_the_last():
    errors = [
        "[defaultAllocator.cpp] Error: out of memory allocating 2 GiB\ndetails",
        "Could not find any implementation",
    ]
    assert _first_error(errors, "x") == (
        "[defaultAllocator.cpp] Error: out of memory allocating 2 GiB (last: Could not find any implementation)"
    )
    assert _first_error(errors[1:], "x") == "Could not find any implementation"
    assert _first_error([], "fallback") == "fallback"
    # a tactic's allocation failure is skipped by TensorRT: the build's cause is its last error
    assert not _ended_out_of_memory(errors) and not _ended_out_of_memory([])
    assert _ended_out_of_memory([*errors, "Error Code 2: OutOfMemory (Requested memory could not be allocated)"])


# -- engine build against a stand-in of TensorRT's Python API ------------------------------------------
class FakeTrt:
    """The part of ``tensorrt`` that ``build_engine`` calls; a timing cache it cannot read is reported as
    TensorRT does: errors logged, and an empty cache handed back all the same."""

    __version__ = "10.13.0.35"
    fail_build: str | None = None

    class ILogger:
        class Severity:
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self) -> None:
            pass

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 1

    class MemoryPoolType:
        WORKSPACE = 0

    class BuilderFlag:
        TF32 = 7

    class Timing:
        def __init__(self, blob: bytes) -> None:
            self.blob = blob

        def serialize(self) -> bytes:
            return b"TC" + self.blob.removeprefix(b"TC") + b"+"

    class Config:
        def __init__(self, logger) -> None:
            self.logger, self.timing, self.profiles, self.builder_optimization_level = logger, None, [], None

        def set_memory_pool_limit(self, pool, size) -> None:
            pass

        def create_timing_cache(self, blob: bytes):
            if blob and not blob.startswith(b"TC"):
                self.logger.log(FakeTrt.ILogger.Severity.ERROR, "Serialization assertion magicTagRead == kMAGIC_TAG")
                self.logger.log(FakeTrt.ILogger.Severity.ERROR, "The timing cache will not be used!")
                return FakeTrt.Timing(b"")
            return FakeTrt.Timing(bytes(blob))

        def set_timing_cache(self, timing, ignore_mismatch: bool) -> bool:
            self.timing = timing
            return True

        def add_optimization_profile(self, profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def get_flag(self, flag) -> bool:
            return True

    class Builder:
        def __init__(self, logger) -> None:
            self.logger = logger

        def create_network(self, flags: int):
            assert flags == 1 << FakeTrt.NetworkDefinitionCreationFlag.STRONGLY_TYPED
            return type("Network", (), {"num_layers": 3, "get_input": lambda self, i: type("T", (), {"name": "x"})})()

        def create_builder_config(self):
            return FakeTrt.Config(self.logger)

        def create_optimization_profile(self):
            return type("Profile", (), {"set_shape": lambda self, name, lo, opt, hi: None})()

        def build_serialized_network(self, network, config):
            if FakeTrt.fail_build:
                self.logger.log(FakeTrt.ILogger.Severity.ERROR, FakeTrt.fail_build)
                return None
            return b"engine"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            return True


@pytest.fixture
def fake_trt(monkeypatch):
    from accelnas.plugins.cuda_trt import trt_engine

    monkeypatch.setattr(trt_engine, "import_tensorrt", lambda: FakeTrt)
    monkeypatch.setattr(trt_engine, "_LOGGER", None)
    monkeypatch.setattr(FakeTrt, "fail_build", None)
    return FakeTrt


def _key():
    from accelnas.plugins.cuda_trt.engine_cache import EngineKey

    return EngineKey("1311-6321-6521-6331-6531-6541-6311", "fp16", (1, 8), 32, "10.13.0.35", "NVIDIA H100", "9.0")


def test_build_reuses_the_timing_cache_and_saves_it_back(fake_trt, tmp_path):
    from accelnas.plugins.cuda_trt.engine_cache import EngineCache
    from accelnas.plugins.cuda_trt.trt_engine import build_engine

    cache, key = EngineCache(tmp_path), _key()
    data, info = build_engine(tmp_path / "a.onnx", key, cache)
    assert data == b"engine" and info["timing_cache_reused"] is False and info["tf32_allowed"] is True
    assert cache.load_timing_cache(key) == b"TC+"
    _, info = build_engine(tmp_path / "a.onnx", key, cache)
    assert info["timing_cache_reused"] is True and cache.load_timing_cache(key) == b"TC++"


def test_an_unreadable_timing_cache_is_not_reused_nor_blamed_for_a_failed_build(fake_trt, tmp_path, caplog):
    from accelnas.plugins.cuda_trt.engine_cache import EngineCache
    from accelnas.plugins.cuda_trt.trt_engine import build_engine

    cache, key = EngineCache(tmp_path), _key()
    cache.store_timing_cache(key, b"garbage")
    _, info = build_engine(tmp_path / "a.onnx", key, cache)
    assert info["timing_cache_reused"] is False and cache.load_timing_cache(key) == b"TC+"
    assert "unusable (Serialization assertion magicTagRead == kMAGIC_TAG" in caplog.text

    cache.store_timing_cache(key, b"garbage")
    fake_trt.fail_build = "Could not find any implementation for node /conv/Conv"
    with pytest.raises(EngineBuildError) as failed:
        build_engine(tmp_path / "a.onnx", key, cache)
    assert str(failed.value).endswith(": Could not find any implementation for node /conv/Conv")
