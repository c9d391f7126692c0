"""Retry policy for transient measurement errors: bounded attempts with exponential backoff.

An error is transient when its text matches one of the policy's patterns (a lost worker, a timeout,
a busy device, a dropped connection); anything else (a plugin bug, a malformed record, an
architecture the compiler rejects) fails at once, because measuring it again gives the same error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_TRANSIENT = (
    r"timed out|timeout",
    r"child process died|worker died|worker crashed|node died|node .* dead|actor died",
    r"connection (reset|refused|aborted|closed)|broken pipe|temporarily unavailable",
    r"device (or resource )?busy|resource busy|try again",
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a measurement that failed transiently is tried again, and how long to wait in between."""

    max_attempts: int = 2  # attempts in total within one campaign run (1 = no retry)
    backoff_seconds: float = 1.0  # wait before the second attempt
    backoff_factor: float = 2.0  # each further wait is this many times longer
    max_backoff_seconds: float = 60.0
    transient: tuple[str, ...] = field(default=DEFAULT_TRANSIENT)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.backoff_seconds < 0 or self.backoff_factor < 1 or self.max_backoff_seconds < 0:
            raise ValueError("backoff must be >= 0 and the backoff factor >= 1")

    def is_transient(self, error: str) -> bool:
        return any(re.search(pattern, error, re.IGNORECASE) for pattern in self.transient)

    def should_retry(self, error: str, attempt: int) -> bool:
        """True when a failure of attempt number ``attempt`` (1-based) deserves another try."""
        return attempt < self.max_attempts and self.is_transient(error)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` before the next one."""
        return min(self.max_backoff_seconds, self.backoff_seconds * self.backoff_factor ** (attempt - 1))


NO_RETRY = RetryPolicy(max_attempts=1)


def policy_for(target: str, policies: RetryPolicy | Mapping[str, RetryPolicy] | None) -> RetryPolicy:
    """The policy of ``target`` from a single policy or a {target or device or "*": policy} mapping."""
    if policies is None:
        return RetryPolicy()
    if isinstance(policies, RetryPolicy):
        return policies
    device = target.split("/")[0]
    for key in (target, device, "*"):
        if key in policies:
            return policies[key]
    return RetryPolicy()
