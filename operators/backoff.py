"""Retry policy: which outcomes are retried, and how long to wait first. Plain code, no Rx, no clock.

The guide's rule: after the n-th failed attempt (n = 1, 2, …) wait
``min(base_delay · 2^(n-1) + jitter, max_delay)`` with ``jitter`` uniform in
``[0, jitter_factor · base_delay · 2^(n-1)]``. A server's ``Retry-After`` (429/503) is a floor,
clamped to ``max_delay``. ``max_attempts`` counts every attempt, the first one included.

The policy is the extension point: any object with ``should_retry(outcome, attempt)`` and
``get_delay(attempt, outcome)``; ``resilience.retry.policy`` names one as ``module:factory``
(called with the ``RetryConfig``), or "default".
"""

from __future__ import annotations

import importlib
import math
import random
from collections.abc import Callable
from typing import Any, Protocol

from pattern_tracker.model.outcome import Outcome

# Outcome classes worth trying again soon: the service or the network failed transiently.
# Not "parent_missing": the parent is usually still in the spool behind it, and retrying in place
# would block everything behind it; the event goes back to the spool and replay (in chain order)
# brings it round after its parent.
RETRYABLE_CLASSES = frozenset(
    {
        "connection",
        "timeout",
        "http_408",
        "http_429",
        "http_500",
        "http_502",
        "http_503",
        "http_504",
        "server_error",
        "bad_response",
        "incomplete_response",
        "store",
        "internal",
    }
)


class RetryPolicy(Protocol):
    def should_retry(self, outcome: Outcome, attempt: int) -> bool:
        """Whether to try again after ``attempt`` attempts ended with ``outcome``."""
        ...

    def get_delay(self, attempt: int, outcome: Outcome | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        ...


class ExponentialBackoff:
    """The default policy (see module docstring). ``rand`` returns a float in [0, 1)."""

    def __init__(
        self,
        max_attempts: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        jitter_factor: float = 0.1,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if base_delay < 0 or max_delay <= 0 or not 0 <= jitter_factor <= 1:
            raise ValueError("base_delay >= 0, max_delay > 0 and 0 <= jitter_factor <= 1 are required")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.jitter_factor = jitter_factor
        self._rand = rand

    def should_retry(self, outcome: Outcome, attempt: int) -> bool:
        return outcome.status == "retryable" and outcome.error_class in RETRYABLE_CLASSES and attempt < self.max_attempts

    def get_delay(self, attempt: int, outcome: Outcome | None) -> float:
        # ldexp: exact base·2^(n-1); capped before the jitter so a huge attempt cannot overflow (or make inf·0 = nan).
        try:
            exp = min(math.ldexp(self.base_delay, max(0, attempt - 1)), self.max_delay)
        except OverflowError:
            exp = self.max_delay
        delay = min(exp + self._rand() * self.jitter_factor * exp, self.max_delay)
        if outcome is not None and outcome.retry_after is not None:
            delay = max(delay, min(outcome.retry_after, self.max_delay))
        return delay


def load_policy(name: str, settings: Any) -> RetryPolicy:
    """``"default"`` or ``"package.module:factory"``; the factory is called with ``settings``."""
    if name == "default":
        return ExponentialBackoff(settings.max_attempts, settings.base_delay, settings.max_delay, settings.jitter_factor)
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ValueError(f"resilience.retry.policy {name!r}: expected 'default' or 'module:factory'")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"resilience.retry.policy {name!r}: cannot load it ({exc})") from None
    policy = factory(settings)
    if not (callable(getattr(policy, "should_retry", None)) and callable(getattr(policy, "get_delay", None))):
        raise ValueError(f"resilience.retry.policy {name!r}: the object has no should_retry/get_delay")
    return policy
