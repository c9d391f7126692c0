"""Hook implementations of the cuda_trt plugin."""

from __future__ import annotations
