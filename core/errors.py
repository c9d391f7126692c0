"""User-facing error types: the CLI prints these as one line and exits non-zero."""

from __future__ import annotations

# What plugin code may raise that still stops the tool (Ctrl-C): any other exception, ``SystemExit``,
# ``asyncio.CancelledError`` and ``GeneratorExit`` included, is the plugin's failure.
PASS_THROUGH: tuple[type[BaseException], ...] = (KeyboardInterrupt,)


class AccelnasError(Exception):
    """Base class of errors caused by input, configuration or a plugin, not by a bug."""

    exit_code = 1


class InvalidArchitectureError(AccelnasError, ValueError):
    """An architecture (string id, config dict or vector) is outside the search space."""

    exit_code = 2


class InvalidArgumentError(AccelnasError, ValueError):
    """An argument names nothing known (a device, a family) or has a value out of range."""

    exit_code = 2


class UnknownTargetError(AccelnasError, KeyError):
    """No loaded plugin registered the requested target."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownOptionError(AccelnasError, ValueError):
    """A campaign passes a backend option its target does not declare, or a value the target refuses."""

    exit_code = 2


class TargetUnavailableError(AccelnasError):
    """The target is known but its SDK or hardware is missing here.

    Raised by a plugin's hook in the middle of a campaign (a board that no longer answers), it stops
    the campaign: nothing is stored for that measurement and what is left stays pending.
    """

    exit_code = 3


class PluginLoadError(AccelnasError):
    """A plugin could not be found or imported."""

    exit_code = 2


class PluginError(AccelnasError):
    """A plugin raised or returned a malformed record; ``plugin`` names it when known."""

    def __init__(self, message: str, plugin: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin


class StoreError(AccelnasError):
    """The campaign store is missing, corrupt or of an incompatible version."""


class DatasetError(AccelnasError):
    """A dataset file is missing or malformed."""


class SurrogateError(AccelnasError):
    """A surrogate artifact is missing, corrupt or incompatible."""


class NoSurrogateError(AccelnasError, LookupError):
    """A benchmark has no surrogate (or more than one) for the device and metric asked for."""

    exit_code = 2


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(exc: BaseException) -> str:
    """``Type: first line`` of an exception, for messages that name what went wrong."""
    return f"{type(exc).__name__}: {first_line(exc)}"
