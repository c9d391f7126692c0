"""Shared fixtures: the public Accel-NASBench sample beside the repo (skipped when absent)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "accel-nasbench"
ANB_ARCHIVE = SHARED / "anb_dataset_jsons.tar.gz"


@pytest.fixture(scope="session")
def anb_records() -> list[dict]:
    """Every result_N.json record of the shared Accel-NASBench archive."""
    if not ANB_ARCHIVE.is_file():
        pytest.skip(f"Accel-NASBench data not found at {ANB_ARCHIVE}")
    records = []
    with tarfile.open(ANB_ARCHIVE) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                records.append(json.load(tar.extractfile(member)))
    return records
