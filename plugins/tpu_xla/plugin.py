"""Hook implementations of the tpu_xla plugin."""

from __future__ import annotations
