"""What export and ``surrogates build --from-db`` say about a store: pending measurements, results of
one settings key from different hardware, and settings keys that differ in threads or options."""

from __future__ import annotations

import logging

import pytest
from cli_helpers import run_cli

from accelnas.core import dataset
from accelnas.core.errors import DatasetError
from accelnas.core.hardware import hardware_of, mixed_hardware
from accelnas.core.records import Measurement
from accelnas.core.space import sample
from accelnas.core.store import Store


def _m(value: float, metric: str = "latency", provenance: dict | None = None) -> Measurement:
    m = Measurement(metric, "ms", value, 0.1, value - 0.1, value + 0.1, [value], 1, 32, True)
    m.provenance = provenance or {}
    return m


def test_hardware_is_named_from_the_provenance():
    host = {"cpu_model": "Intel Xeon X", "threads": 2}
    assert hardware_of(host) == "Intel Xeon X, 2 threads"
    assert hardware_of({"cpu_model": "Intel Xeon X", "threads": 1}) == "Intel Xeon X, 1 thread"
    assert hardware_of(host | {"gpu_name": "NVIDIA H100"}) == "NVIDIA H100"
    assert hardware_of(host | {"device_kind": "TPU v4", "on_tpu": True}) == "TPU v4"
    assert hardware_of(host | {"device_kind": "cpu", "on_tpu": False}) == "Intel Xeon X, 2 threads"
    assert hardware_of(host | {"board": {"dpu": "DPUCZDX8G_B4096"}}) == "DPU DPUCZDX8G_B4096"
    assert hardware_of({"board_identity": {"xdputil_query": {"dpu_arch": ["DPUCZDX8G_ISA1_B4096"]}}}) == (
        "DPU DPUCZDX8G_ISA1_B4096"
    )
    assert hardware_of(None) == "unknown hardware"
    rows = [("cpu/x", "k" * 16, "latency", {"cpu_model": "A", "threads": 2})] * 3
    assert mixed_hardware(rows) == []
    rows += [("cpu/x", "k" * 16, "latency", {"cpu_model": "B", "threads": 2})]
    rows += [("cpu/x", "k" * 16, "accuracy", {"cpu_model": "C"})]  # an accuracy does not depend on the machine
    assert mixed_hardware(rows) == [
        "cpu/x [kkkkkkkk]: measured on 2 kinds of hardware (A, 2 threads: 3 rows; B, 2 threads: 1 rows); "
        "pass --threads N and measure on one kind of machine"
    ]


@pytest.fixture()
def mixed_store(tmp_path):
    """One settings key measured on two CPUs, 2 of 6 planned measurements not made."""
    path = tmp_path / "mixed.sqlite"
    archs = sample(6, 12)
    with Store(path) as s:
        s.record_plan(archs, "cpu/x", ["latency"], "08f9c083aaaa", {"input_size": 32, "threads": None})
        for i, a in enumerate(archs[:4]):
            prov = {"cpu_model": "Xeon A" if i < 3 else "Xeon B", "threads": 2}
            s.record_ok(a, "cpu/x", "08f9c083aaaa", {"input_size": 32, "threads": None}, _m(1.0 + i, provenance=prov))
    return path


def test_export_and_build_warn_of_pending_and_mixed_hardware(tmp_path, mixed_store, caplog):
    with Store(mixed_store, readonly=True) as store, caplog.at_level(logging.WARNING, logger="accelnas.core.dataset"):
        frame = dataset.from_store(store)
    assert len(frame) == 4
    assert "cpu/x [08f9c083]: 2 planned measurements not made yet" in caplog.text
    assert "cpu/x [08f9c083]: measured on 2 kinds of hardware (Xeon A, 2 threads: 3 rows; Xeon B" in caplog.text
    exported = run_cli("export", "--db", str(mixed_store), "--out", str(tmp_path / "ds"))
    assert exported.returncode == 0, exported.stderr
    assert "2 planned measurements not made yet" in exported.stderr and "2 kinds of hardware" in exported.stderr
    built = run_cli("surrogates", "build", "--from-db", str(mixed_store), "--out", str(tmp_path / "b"))
    assert "2 planned measurements not made yet" in built.stderr and "2 kinds of hardware" in built.stderr


def test_settings_keys_differing_in_threads_or_options_are_told_apart(tmp_path):
    path = tmp_path / "two.sqlite"
    archs = sample(5, 13)
    with Store(path) as s:
        for a in archs[:3]:
            s.record_ok(a, "cpu/x", "aaaa1111", {"input_size": 32, "threads": None, "options": {}}, _m(1.0))
        for a in archs[3:]:
            s.record_ok(a, "cpu/x", "bbbb2222", {"input_size": 32, "threads": 1, "options": {"opt": "x"}}, _m(1.0))
    with Store(path, readonly=True) as store:
        frame = dataset.from_store(store)
    with pytest.raises(DatasetError) as raised:
        dataset.select(frame, "cpu/x", "latency")
    message = str(raised.value)
    assert "aaaa1111: 32 px, threads all, 3 rows" in message
    assert 'bbbb2222: 32 px, threads 1, options {"opt": "x"}, 2 rows' in message
    # a dataset file does not record threads or options: the message says where to look
    file_frame = dataset.read(dataset.write(frame, tmp_path / "ds")[1])  # the CSV copy
    with pytest.raises(DatasetError, match=r"threads, options.*accelnas status"):
        dataset.select(file_frame, "cpu/x", "latency")
