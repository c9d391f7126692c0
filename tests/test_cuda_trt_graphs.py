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
