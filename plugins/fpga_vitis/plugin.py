"""Hook implementations of the fpga_vitis plugin."""

from __future__ import annotations
