"""Errors of the FPGA plugin: each one is a one-line :class:`~accelnas.core.errors.AccelnasError`."""

from __future__ import annotations

from accelnas.core.errors import AccelnasError, TargetUnavailableError


class FpgaError(AccelnasError):
    """Base class of the FPGA plugin's errors."""


class BoardConfigError(FpgaError):
    """The board YAML is missing, malformed or lacks the entry a target needs."""


class CalibrationError(FpgaError):
    """The calibration images are missing or malformed."""


class QuantizeError(FpgaError):
    """Quantization failed or produced something the compiler cannot take."""


class CompileError(FpgaError):
    """``vai_c_xir`` is missing, failed, timed out or produced no xmodel."""


class BoardUnreachableError(FpgaError, TargetUnavailableError):
    """The board did not accept an SSH connection within the retries: a campaign stops, its
    remaining measurements left pending (exit code 3)."""


class BoardLoginError(BoardConfigError, TargetUnavailableError):
    """The board refused the SSH login (user or key): a set-up mistake that fails every architecture,
    so a campaign stops at the first with the rest pending (exit code 3)."""


class RemoteCommandError(FpgaError):
    """A command on the board exited non-zero or printed output that could not be parsed."""


class RemoteTimeoutError(FpgaError):
    """A command on the board did not finish within its time-out."""
