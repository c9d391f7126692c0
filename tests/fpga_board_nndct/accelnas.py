"""Test fixture: shadows accelnas on the vai_q_worker's path, so the worker fails should it import accelnas."""

raise ImportError("vai_q_worker must not import accelnas (it runs in the Vitis AI container's Python)")
