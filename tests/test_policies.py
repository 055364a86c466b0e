"""The resilience policies alone: backoff, Retry-After, the breaker state machine (pure and shared in
LMDB), the spool's overflow/expiry rules and the gate's notion of a failed call.

No Rx and no real time here: every function gets ``now`` (or a clock) explicitly, random sources are
injected (one distribution test uses the real one, with a generous statistical bound).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import types
from fractions import Fraction
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pattern_tracker.operators import breaker
from pattern_tracker.operators.backoff import RETRYABLE_CLASSES, ExponentialBackoff, load_policy
from pattern_tracker.operators.breaker import BreakerSettings, BreakerState
from pattern_tracker.operators.circuit_gate import call_failed
from pattern_tracker.operators.overflow import OverflowPlan, is_expired, overflow_plan, spill_action
from pattern_tracker.state.circuit_store import SharedBreaker
from pattern_tracker.settings.config import RetryConfig
from pattern_tracker.core.store import MIB, Store
from pattern_tracker.model.outcome import DELIVERED, Outcome
from pattern_tracker.sinks.retry_after import MAX_RETRY_AFTER, parse_retry_after

ROOT = Path(__file__).resolve().parent.parent


def retryable(error_class: str, retry_after: float | None = None) -> Outcome:
    return Outcome(status="retryable", error_class=error_class, retry_after=retry_after)


PERMANENT = Outcome(status="permanent", error_class="validation", http_status=422)


# --------------------------------------------------------------------------------------------
# Backoff
# --------------------------------------------------------------------------------------------


def test_backoff_exact_delays_without_jitter_draw() -> None:
    p = ExponentialBackoff(max_attempts=10, base_delay=1.0, max_delay=30.0, jitter_factor=0.1, rand=lambda: 0.0)
    assert [p.get_delay(n, None) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_backoff_upper_bound_with_rand_at_one() -> None:
    p = ExponentialBackoff(max_attempts=10, base_delay=1.0, max_delay=30.0, jitter_factor=0.1, rand=lambda: 1.0)
    delays = [p.get_delay(n, None) for n in range(1, 7)]
    assert delays == pytest.approx([1.1, 2.2, 4.4, 8.8, 17.6, 30.0])
    # Just below 1 (random.random's range is [0, 1)): still within exp * (1 + jitter).
    q = ExponentialBackoff(max_attempts=10, base_delay=0.5, max_delay=30.0, jitter_factor=0.5, rand=lambda: 0.999999)
    assert 2.0 <= q.get_delay(3, None) < 3.0


def test_backoff_base_zero_means_no_wait() -> None:
    p = ExponentialBackoff(max_attempts=5, base_delay=0.0, max_delay=30.0, jitter_factor=1.0, rand=lambda: 0.7)
    assert [p.get_delay(n, None) for n in (1, 2, 3)] == [0.0, 0.0, 0.0]


@settings(max_examples=400, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=5000),
    base=st.floats(min_value=0.0, max_value=3600.0),
    max_delay=st.floats(min_value=1e-3, max_value=86_400.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    r=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_bounds_property(attempt: int, base: float, max_delay: float, jitter: float, r: float) -> None:
    p = ExponentialBackoff(max_attempts=3, base_delay=base, max_delay=max_delay, jitter_factor=jitter, rand=lambda: r)
    delay = p.get_delay(attempt, None)
    # The bounds in exact arithmetic: base·2^(n-1) need not fit a float (attempt 1025 and up).
    exp = Fraction(base) * 2 ** (attempt - 1)
    cap = Fraction(max_delay)
    rel = Fraction(1, 10**9)
    assert 0.0 <= delay <= max_delay
    assert Fraction(delay) >= min(exp, cap) * (1 - rel)
    assert Fraction(delay) <= min(exp * (1 + Fraction(jitter)), cap) * (1 + rel)


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=64),
    base=st.floats(min_value=0.0, max_value=60.0),
    max_delay=st.floats(min_value=1e-3, max_value=3600.0),
    retry_after=st.floats(min_value=0.0, max_value=1e6),
)
def test_backoff_retry_after_is_a_floor_clamped_to_max_property(
    attempt: int, base: float, max_delay: float, retry_after: float
) -> None:
    p = ExponentialBackoff(max_attempts=3, base_delay=base, max_delay=max_delay, jitter_factor=0.1, rand=lambda: 0.5)
    plain = p.get_delay(attempt, None)
    with_after = p.get_delay(attempt, retryable("http_429", retry_after))
    assert with_after == max(plain, min(retry_after, max_delay))
    assert with_after <= max_delay


def test_backoff_distribution_with_real_random_source() -> None:
    p = ExponentialBackoff(max_attempts=5, base_delay=1.0, max_delay=30.0, jitter_factor=0.1)
    samples = [p.get_delay(3, None) for _ in range(2000)]
    assert all(4.0 <= s <= 4.4 for s in samples)
    # Uniform on [4, 4.4]: mean 4.2, sd 0.4/sqrt(12) = 0.115, sd of the mean over 2000 ≈ 0.0026.
    # 0.02 is ~8 standard errors: never flaky, yet catches a wrong scale or a constant draw.
    assert statistics.fmean(samples) == pytest.approx(4.2, abs=0.02)
    assert min(samples) < 4.05 and max(samples) > 4.35  # the draw really spreads over the range
    assert statistics.pstdev(samples) == pytest.approx(0.4 / 12**0.5, rel=0.15)


def test_retry_after_is_a_floor() -> None:
    p = ExponentialBackoff(max_attempts=5, base_delay=0.1, max_delay=30.0, jitter_factor=0.0)
    assert p.get_delay(1, retryable("http_429", 2.0)) == 2.0
    assert p.get_delay(1, retryable("http_503", 0.01)) == pytest.approx(0.1)  # below the backoff: backoff wins
    assert p.get_delay(1, retryable("http_429", 100.0)) == 30.0  # clamped to max_delay
    q = ExponentialBackoff(max_attempts=5, base_delay=1.0, max_delay=30.0, jitter_factor=0.0)
    assert q.get_delay(5, retryable("http_429", 3.0)) == 16.0  # the larger of the two


@pytest.mark.parametrize("error_class", ["connection", "timeout", "http_429", "http_500", "http_502", "http_503", "http_504"])
def test_should_retry_retryable_classes_until_max_attempts(error_class: str) -> None:
    assert error_class in RETRYABLE_CLASSES
    p = ExponentialBackoff(max_attempts=4)
    out = retryable(error_class)
    assert [p.should_retry(out, n) for n in (1, 2, 3, 4, 5)] == [True, True, True, False, False]


def test_should_retry_single_attempt_never_retries() -> None:
    p = ExponentialBackoff(max_attempts=1)
    assert not p.should_retry(retryable("http_503"), 1)


@pytest.mark.parametrize("outcome", [PERMANENT, DELIVERED, Outcome(status="already_exists"),
                                     Outcome(status="permanent", error_class="http_503")])
def test_should_retry_never_for_non_retryable_statuses(outcome: Outcome) -> None:
    p = ExponentialBackoff(max_attempts=10)
    assert not any(p.should_retry(outcome, n) for n in range(0, 10))


@pytest.mark.parametrize("error_class", ["auth", "endpoint_missing", None, "http_401", "http_418"])
def test_should_retry_never_for_classes_not_retryable(error_class: str | None) -> None:
    p = ExponentialBackoff(max_attempts=10)
    out = Outcome(status="retryable", error_class=error_class)
    assert not any(p.should_retry(out, n) for n in range(0, 10))


def test_backoff_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        ExponentialBackoff(max_attempts=0)
    for kwargs in ({"base_delay": -1.0}, {"max_delay": 0.0}, {"jitter_factor": 1.5}, {"jitter_factor": -0.1}):
        with pytest.raises(ValueError):
            ExponentialBackoff(**kwargs)


# -- load_policy --------------------------------------------------------------------------------


class FixedPolicy:
    """A tiny custom policy: fixed delay, retries everything retryable up to max_attempts."""

    def __init__(self, settings: RetryConfig) -> None:
        self.settings = settings

    def should_retry(self, outcome: Outcome, attempt: int) -> bool:
        return outcome.status == "retryable" and attempt < self.settings.max_attempts

    def get_delay(self, attempt: int, outcome: Outcome | None) -> float:
        return 0.25


def make_policy(settings: RetryConfig) -> FixedPolicy:
    return FixedPolicy(settings)


def make_nothing(settings: RetryConfig) -> object:
    return types.SimpleNamespace(should_retry=lambda o, n: True)  # no get_delay


def test_load_policy_default_uses_the_settings() -> None:
    cfg = RetryConfig(max_attempts=7, base_delay=0.5, max_delay=9.0, jitter_factor=0.2)
    p = load_policy("default", cfg)
    assert isinstance(p, ExponentialBackoff)
    assert (p.max_attempts, p.base_delay, p.max_delay, p.jitter_factor) == (7, 0.5, 9.0, 0.2)


def test_load_policy_module_factory() -> None:
    cfg = RetryConfig(max_attempts=2)
    p = load_policy("tests.test_policies:make_policy", cfg)
    assert type(p).__name__ == "FixedPolicy"
    assert p.get_delay(1, None) == 0.25
    assert p.should_retry(retryable("auth"), 1) and not p.should_retry(retryable("auth"), 2)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("exponential", "expected 'default' or 'module:factory'"),
        ("tests.test_policies:", "expected 'default' or 'module:factory'"),
        (":make_policy", "expected 'default' or 'module:factory'"),
        ("", "expected 'default' or 'module:factory'"),
        ("no_such_module_pt:make_policy", "cannot load it"),
        ("tests.test_policies:no_such_factory", "cannot load it"),
        ("tests.test_policies:make_nothing", "no should_retry/get_delay"),
    ],
)
def test_load_policy_bad_names(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        load_policy(name, RetryConfig())
    assert repr(name) in str(info.value)  # the message names what was configured
    assert "resilience.retry.policy" in str(info.value)


# --------------------------------------------------------------------------------------------
# Retry-After parsing
# --------------------------------------------------------------------------------------------

HTTP_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
HTTP_DATE_TS = 1445412480.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2.0), ("0", 0.0), (" 120 ", 120.0), ("1.5", 1.5), ("+3", 3.0), (b"7", 7.0), ("-5", 0.0), ("-0", 0.0)],
)
def test_parse_retry_after_seconds(value: str | bytes, expected: float) -> None:
    assert parse_retry_after(value, now=0.0) == expected


def test_parse_retry_after_http_dates() -> None:
    assert parse_retry_after(HTTP_DATE, now=HTTP_DATE_TS - 30) == 30.0
    assert parse_retry_after(HTTP_DATE, now=HTTP_DATE_TS + 30) == 0.0  # in the past: no wait
    assert parse_retry_after(HTTP_DATE, now=HTTP_DATE_TS) == 0.0
    assert parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", now=HTTP_DATE_TS - 30) == 30.0  # RFC 850
    assert parse_retry_after("Wed Oct 21 07:28:00 2015", now=HTTP_DATE_TS - 30) == 30.0  # asctime
    assert parse_retry_after(HTTP_DATE.encode(), now=HTTP_DATE_TS - 1) == 1.0
    # Far in the future: clamped to the maximum.
    assert parse_retry_after(HTTP_DATE, now=0.0) == MAX_RETRY_AFTER
    assert parse_retry_after(HTTP_DATE, now=0.0, maximum=None) == HTTP_DATE_TS


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "12abc", "1 2", "1e5", "nan", "inf", "Foo, 99 Bar 2015 99:99:99 GMT"])
def test_parse_retry_after_garbage(value: str | None) -> None:
    assert parse_retry_after(value, now=0.0) is None


def test_parse_retry_after_huge_is_clamped() -> None:
    assert parse_retry_after("999999999", now=0.0) == MAX_RETRY_AFTER
    assert parse_retry_after("9" * 400, now=0.0) == MAX_RETRY_AFTER  # float() overflows to inf: still clamped
    assert parse_retry_after("999", now=0.0, maximum=30.0) == 30.0
    assert parse_retry_after("999999999", now=0.0, maximum=None) == 999999999.0
    assert parse_retry_after("9" * 400, now=0.0, maximum=None) is None  # infinite and unclamped: unusable


# --------------------------------------------------------------------------------------------
# Breaker (pure state machine)
# --------------------------------------------------------------------------------------------

CFG = BreakerSettings(failure_threshold=5, recovery_timeout=60.0, half_open_attempts=3)


def fail_n(s: BreakerState, cfg: BreakerSettings, n: int, t0: float, step: float = 1.0) -> BreakerState:
    for i in range(n):
        permit, s = breaker.acquire(s, cfg, t0 + i * step)
        assert permit == "call"
        s = breaker.record(s, cfg, t0 + i * step, "call", False)
    return s


def tripped(t_open: float = 104.0) -> BreakerState:
    """Open at ``t_open`` after 5 consecutive failures at t_open-4 … t_open."""
    s = fail_n(BreakerState(), CFG, 5, t_open - 4)
    assert s.state == "open" and s.opened_at == t_open
    return s


def test_closed_opens_after_threshold_consecutive_failures() -> None:
    s = fail_n(BreakerState(), CFG, 4, 100.0)
    assert s.state == "closed" and s.failure_count == 4 and s.last_failure_time == 103.0
    permit, s = breaker.acquire(s, CFG, 104.0)
    assert permit == "call"
    s = breaker.record(s, CFG, 104.0, "call", False)
    assert s.state == "open"
    assert (s.opened_at, s.trip_count, s.failure_count, s.changed_at) == (104.0, 1, 5, 104.0)
    assert breaker.retry_at(s, CFG) == 164.0


def test_a_success_resets_the_consecutive_count() -> None:
    s = fail_n(BreakerState(), CFG, 4, 100.0)
    s = breaker.record(s, CFG, 104.0, "call", True)
    assert s.state == "closed" and s.failure_count == 0
    s = fail_n(s, CFG, 4, 105.0)
    assert s.state == "closed" and s.failure_count == 4
    s = fail_n(s, CFG, 1, 109.0)
    assert s.state == "open" and s.opened_at == 109.0


def test_open_refuses_until_recovery_timeout() -> None:
    s = tripped(104.0)
    for i, t in enumerate((104.0, 130.0, 163.999), start=1):
        permit, s = breaker.acquire(s, CFG, t)
        assert permit is None
        assert s.state == "open" and s.calls_not_permitted == i
    permit, s = breaker.acquire(s, CFG, 164.0)  # exactly opened_at + recovery_timeout
    assert permit == "trial"
    assert s.state == "half_open" and s.half_open_at == 164.0 and s.trials_started == 1
    assert breaker.retry_at(s, CFG) is None  # only meaningful while open


def test_half_open_admits_exactly_the_configured_trials() -> None:
    s = tripped(104.0)
    permits = []
    for t in (164.0, 165.0, 166.0, 167.0, 168.0):
        permit, s = breaker.acquire(s, CFG, t)
        permits.append(permit)
    assert permits == ["trial", "trial", "trial", None, None]
    assert s.state == "half_open" and s.trials_started == 3 and s.calls_not_permitted == 2


def test_all_trials_succeed_closes() -> None:
    s = tripped(104.0)
    for t in (164.0, 165.0, 166.0):
        _, s = breaker.acquire(s, CFG, t)
    s = breaker.record(s, CFG, 170.0, "trial", True)
    s = breaker.record(s, CFG, 171.0, "trial", True)
    assert s.state == "half_open" and s.trials_succeeded == 2
    s = breaker.record(s, CFG, 172.0, "trial", True)
    assert s.state == "closed"
    assert (s.opened_at, s.failure_count, s.trials_started, s.trials_succeeded, s.half_open_at) == (None, 0, 0, 0, None)
    assert s.trip_count == 1 and s.changed_at == 172.0
    assert breaker.acquire(s, CFG, 173.0)[0] == "call"


@pytest.mark.parametrize("failing_trial", [0, 1, 2])
def test_any_failed_trial_reopens(failing_trial: int) -> None:
    s = tripped(104.0)
    for t in (164.0, 165.0, 166.0):
        _, s = breaker.acquire(s, CFG, t)
    for i in range(3):
        t = 170.0 + i
        s = breaker.record(s, CFG, t, "trial", i != failing_trial)
        if i == failing_trial:
            break
    assert s.state == "open" and s.opened_at == 170.0 + failing_trial and s.trip_count == 2
    assert s.trials_started == 0 and s.trials_succeeded == 0
    assert s.last_failure_time == 170.0 + failing_trial
    # The other trials reporting late change nothing while open.
    late = breaker.record(s, CFG, 175.0, "trial", True)
    assert late == s
    assert breaker.acquire(s, CFG, 170.0 + failing_trial + 59.9)[0] is None
    assert breaker.acquire(s, CFG, 170.0 + failing_trial + 60.0)[0] == "trial"


def test_stale_trials_are_given_back_after_recovery_timeout() -> None:
    s = tripped(104.0)
    for t in (164.0, 165.0, 166.0):
        _, s = breaker.acquire(s, CFG, t)
    s = breaker.record(s, CFG, 167.0, "trial", True)  # one reported, two never do (process died)
    assert breaker.acquire(s, CFG, 223.999)[0] is None  # not yet: 164 + 60 = 224
    permit, s = breaker.acquire(s, CFG, 224.0)
    assert permit == "trial"
    assert s.half_open_at == 224.0 and s.trials_succeeded == 1 and s.trials_started == 2
    permit, s = breaker.acquire(s, CFG, 225.0)
    assert permit == "trial" and s.trials_started == 3
    assert breaker.acquire(s, CFG, 226.0)[0] is None
    s = breaker.record(s, CFG, 227.0, "trial", True)
    s = breaker.record(s, CFG, 228.0, "trial", True)
    assert s.state == "closed"


def test_late_results_of_given_back_trials_do_not_outnumber_the_trials_started() -> None:
    s = tripped(104.0)
    for t in (164.0, 165.0, 166.0):
        _, s = breaker.acquire(s, CFG, t)
    permit, s = breaker.acquire(s, CFG, 230.0)  # all three given back, one new trial
    assert permit == "trial" and s.trials_started == 1
    s = breaker.record(s, CFG, 231.0, "trial", True)  # an old trial finally reports
    s = breaker.record(s, CFG, 232.0, "trial", True)  # and another one
    assert s.trials_succeeded <= s.trials_started
    assert s.state == "half_open"  # two successes do not close a circuit that needs three


def test_late_call_result_while_open_does_not_close() -> None:
    s = tripped(104.0)
    after = breaker.record(s, CFG, 105.0, "call", True)
    assert after == s
    after = breaker.record(s, CFG, 106.0, "call", False)
    assert after.state == "open" and after.opened_at == 104.0 and after.trip_count == 1
    assert after.last_failure_time == 106.0
    # A late call result while half open does not count as a trial either.
    _, h = breaker.acquire(s, CFG, 164.0)
    for _ in range(3):
        h = breaker.record(h, CFG, 165.0, "call", True)
    assert h.state == "half_open" and h.trials_succeeded == 0
    h = breaker.record(h, CFG, 166.0, "call", False)
    assert h.state == "half_open"


def test_late_trial_result_after_close_or_reset_is_ignored() -> None:
    s = tripped(104.0)
    _, s = breaker.acquire(s, CFG, 164.0)
    r = breaker.reset(s, 165.0)
    assert breaker.record(r, CFG, 166.0, "trial", False) == r
    assert breaker.record(r, CFG, 166.0, "trial", True) == r


# -- failure_rate mode -------------------------------------------------------------------------

RATE = BreakerSettings(mode="failure_rate", window_size=10, minimum_calls=5, failure_rate_threshold=0.5)


def feed(s: BreakerState, cfg: BreakerSettings, results: list[bool], t0: float = 0.0) -> BreakerState:
    for i, ok in enumerate(results):
        s = breaker.record(s, cfg, t0 + i, "call", ok)
    return s


def test_failure_rate_below_minimum_calls_does_not_open() -> None:
    s = feed(BreakerState(), RATE, [False] * 4)
    assert s.state == "closed" and s.window == [1, 1, 1, 1] and s.failure_count == 4
    assert breaker.failure_rate(s.window) == 1.0
    s = feed(s, RATE, [False], t0=4.0)
    assert s.state == "open" and s.opened_at == 4.0


def test_failure_rate_threshold_in_a_full_window() -> None:
    four = feed(BreakerState(), RATE, [True] * 6 + [False] * 4)
    assert four.state == "closed" and len(four.window) == 10 and breaker.failure_rate(four.window) == 0.4
    five = feed(BreakerState(), RATE, [True] * 5 + [False] * 5)
    assert five.state == "open" and five.opened_at == 9.0 and five.failure_count == 5


def test_failure_rate_rate_counts_at_exactly_minimum_calls() -> None:
    s = feed(BreakerState(), RATE, [True, True, False, False])
    assert s.state == "closed"
    s = feed(s, RATE, [False], t0=4.0)  # 3 of 5 = 0.6
    assert s.state == "open"
    s2 = feed(BreakerState(), RATE, [True, True, True, False, False])  # 2 of 5 = 0.4
    assert s2.state == "closed"


def test_failure_rate_old_outcomes_slide_out() -> None:
    s = feed(BreakerState(), RATE, [True] * 6 + [False] * 4)  # 4 of 10
    assert s.state == "closed" and s.window == [0] * 6 + [1] * 4
    s = feed(s, RATE, [True] * 6, t0=10.0)  # the first 6 successes slide out: still 4 of 10
    assert s.state == "closed" and s.window == [1] * 4 + [0] * 6 and s.failure_count == 4
    s = feed(s, RATE, [True] * 4, t0=16.0)  # now the 4 failures slide out
    assert s.window == [0] * 10 and s.failure_count == 0
    s = feed(s, RATE, [False] * 4, t0=20.0)
    assert s.state == "closed" and s.failure_count == 4
    s = feed(s, RATE, [False], t0=24.0)  # 5 of 10
    assert s.state == "open" and s.window == [0] * 5 + [1] * 5
    assert s.last_failure_time == 24.0 and s.opened_at == 24.0


def test_failure_rate_window_cleared_on_close() -> None:
    cfg = msgspec.structs.replace(RATE, half_open_attempts=1, recovery_timeout=10.0)
    s = feed(BreakerState(), cfg, [False] * 5)
    assert s.state == "open"
    permit, s = breaker.acquire(s, cfg, 20.0)
    s = breaker.record(s, cfg, 21.0, "trial", True)
    assert s.state == "closed" and s.window == [] and s.failure_count == 0


# -- operator actions --------------------------------------------------------------------------


def test_reset_closes_and_keeps_history() -> None:
    s = tripped(104.0)
    _, s = breaker.acquire(s, CFG, 110.0)  # refused: counted
    r = breaker.reset(s, 120.0)
    assert r.state == "closed" and r.opened_at is None and r.failure_count == 0 and r.changed_at == 120.0
    assert r.trip_count == 1 and r.calls_not_permitted == 1 and r.last_failure_time == 104.0
    assert breaker.acquire(r, CFG, 121.0)[0] == "call"


def test_forced_open_refuses_until_reset() -> None:
    s = breaker.force_open(BreakerState(), 10.0)
    assert s.state == "forced_open" and s.opened_at == 10.0 and s.trip_count == 1
    for i, t in enumerate((11.0, 100.0, 10_000.0, 1e9), start=1):  # no recovery timeout applies
        permit, s = breaker.acquire(s, CFG, t)
        assert permit is None and s.state == "forced_open" and s.calls_not_permitted == i
    assert breaker.retry_at(s, CFG) is None
    assert breaker.record(s, CFG, 12.0, "trial", True) == s
    assert breaker.record(s, CFG, 12.0, "call", True).state == "forced_open"
    s = breaker.reset(s, 1e9 + 1)
    assert breaker.acquire(s, CFG, 1e9 + 2)[0] == "call"


def test_disabled_always_permits_and_records_nothing() -> None:
    s = breaker.disable(tripped(104.0), 105.0)
    assert s.state == "disabled"
    for t in (106.0, 107.0):
        permit, s2 = breaker.acquire(s, CFG, t)
        assert permit == "call" and s2 == s
    for ok in (False, True, False):
        assert breaker.record(s, CFG, 108.0, "call", ok) == s
        assert breaker.record(s, CFG, 108.0, "trial", ok) == s
    fresh = breaker.disable(BreakerState(), 1.0)
    assert feed(fresh, CFG, [False] * 50) == fresh
    assert breaker.reset(s, 200.0).state == "closed"


# -- property: the state machine stays valid -----------------------------------------------------

STATES = {"closed", "open", "half_open", "forced_open", "disabled"}

ops_strategy = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "acquire", "success", "failure", "late_success", "late_failure"]),
        st.floats(min_value=0.0, max_value=40.0),  # time step
        st.integers(min_value=0, max_value=7),  # which outstanding permit reports
    ),
    max_size=80,
)

breaker_settings = st.builds(
    BreakerSettings,
    failure_threshold=st.integers(1, 6),
    recovery_timeout=st.sampled_from([1.0, 10.0, 60.0]),
    half_open_attempts=st.integers(1, 4),
    mode=st.sampled_from(["consecutive", "failure_rate"]),
    window_size=st.integers(1, 10),
    minimum_calls=st.integers(1, 10),
    failure_rate_threshold=st.sampled_from([0.1, 0.5, 1.0]),
)


def check_invariants(s: BreakerState, cfg: BreakerSettings) -> None:
    assert s.state in STATES
    assert 0 <= s.trials_succeeded <= s.trials_started <= cfg.half_open_attempts
    assert s.failure_count >= 0 and s.calls_not_permitted >= 0 and s.trip_count >= 0
    assert len(s.window) <= cfg.window_size and set(s.window) <= {0, 1}
    if s.state == "closed":
        assert s.opened_at is None
    if s.state == "open":
        assert s.opened_at is not None and s.trials_started == 0 and s.trials_succeeded == 0
    if s.state == "half_open":
        assert s.half_open_at is not None and s.opened_at is not None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=breaker_settings, ops=ops_strategy)
def test_breaker_never_reaches_an_invalid_state(cfg: BreakerSettings, ops: list[tuple[str, float, int]]) -> None:
    s = BreakerState()
    now = 0.0
    outstanding: list[str] = []
    for op, dt, pick in ops:
        now += dt
        before = s
        if op == "acquire":
            permit, s = breaker.acquire(s, cfg, now)
            if permit is not None:
                outstanding.append(permit)
            else:
                assert s.calls_not_permitted == before.calls_not_permitted + 1
        elif op in ("success", "failure"):
            if not outstanding:
                continue
            permit = outstanding.pop(pick % len(outstanding))
            s = breaker.record(s, cfg, now, permit, op == "success")  # type: ignore[arg-type]
        else:  # a result for a permit of an earlier episode (or another process)
            s = breaker.record(s, cfg, now, "trial" if pick % 2 else "call", op == "late_success")
        check_invariants(s, cfg)
        assert s.trip_count >= before.trip_count and s.calls_not_permitted >= before.calls_not_permitted
        assert s.changed_at <= now


# --------------------------------------------------------------------------------------------
# Spool rules: overflow_plan, spill_action and is_expired
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest", "block"])
def test_overflow_plan_with_room(policy: str) -> None:
    assert overflow_plan(0, 10, 5, policy) == OverflowPlan(5, 0, 0, False)  # type: ignore[arg-type]
    assert overflow_plan(5, 10, 5, policy) == OverflowPlan(5, 0, 0, False)  # type: ignore[arg-type]  # exactly fills
    assert overflow_plan(10, 10, 0, policy) == OverflowPlan(0, 0, 0, False)  # type: ignore[arg-type]  # nothing new


def test_overflow_plan_room_exactly_zero() -> None:
    assert overflow_plan(10, 10, 1, "drop_oldest") == OverflowPlan(admit=1, drop_oldest=1, drop_newest=0, block=False)
    assert overflow_plan(10, 10, 1, "drop_newest") == OverflowPlan(admit=0, drop_oldest=0, drop_newest=1, block=False)
    assert overflow_plan(10, 10, 1, "block") == OverflowPlan(admit=0, drop_oldest=0, drop_newest=0, block=True)
    assert overflow_plan(10, 10, 3, "drop_oldest") == OverflowPlan(3, 3, 0, False)


def test_overflow_plan_partial_room() -> None:
    assert overflow_plan(8, 10, 5, "drop_oldest") == OverflowPlan(5, 3, 0, False)
    assert overflow_plan(8, 10, 5, "drop_newest") == OverflowPlan(2, 0, 3, False)
    assert overflow_plan(8, 10, 5, "block") == OverflowPlan(0, 0, 0, True)  # all or nothing


def test_overflow_plan_incoming_larger_than_the_bound() -> None:
    # 15 newcomers, 4 queued, bound 10: the queue is emptied and the newest 10 fit; 5 newcomers are dropped.
    assert overflow_plan(4, 10, 15, "drop_oldest") == OverflowPlan(admit=10, drop_oldest=4, drop_newest=5, block=False)
    assert overflow_plan(0, 10, 15, "drop_oldest") == OverflowPlan(10, 0, 5, False)
    assert overflow_plan(4, 10, 15, "drop_newest") == OverflowPlan(6, 0, 9, False)
    assert overflow_plan(4, 10, 15, "block") == OverflowPlan(0, 0, 0, True)


def test_overflow_plan_queue_already_over_the_bound() -> None:
    # E.g. cache_size lowered between runs: nothing may make it grow.
    assert overflow_plan(12, 10, 1, "drop_newest") == OverflowPlan(0, 0, 1, False)
    assert overflow_plan(12, 10, 1, "block").block
    # drop_oldest brings it back down to the bound.
    assert overflow_plan(12, 10, 2, "drop_oldest") == OverflowPlan(admit=2, drop_oldest=4, drop_newest=0, block=False)


@settings(max_examples=300, deadline=None)
@given(
    bound=st.integers(1, 50),
    size=st.integers(0, 50),
    incoming=st.integers(0, 120),
    policy=st.sampled_from(["drop_oldest", "drop_newest", "block"]),
)
def test_overflow_plan_conserves_events_and_respects_the_bound(bound: int, size: int, incoming: int, policy: str) -> None:
    size = min(size, bound)
    plan = overflow_plan(size, bound, incoming, policy)  # type: ignore[arg-type]
    assert min(plan.admit, plan.drop_oldest, plan.drop_newest) >= 0
    assert plan.drop_oldest <= size
    if plan.block:
        assert policy == "block" and incoming > bound - size and plan == OverflowPlan(0, 0, 0, True)
    else:
        assert plan.admit + plan.drop_newest == incoming  # every newcomer is queued or counted as dropped
        assert size - plan.drop_oldest + plan.admit <= bound
        if policy != "drop_oldest":
            assert plan.drop_oldest == 0


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 60), bound=st.integers(1, 50))
def test_spill_action_never_queues_a_live_event_again_whatever_the_room(size: int, bound: int) -> None:
    # A live event with no entry left the spool since it was read (dropped, expired, cleared,
    # settled elsewhere): a spill writes nothing, even with room to spare.
    assert spill_action(False, size, bound) == "gone"


def test_spill_action_gives_a_durable_event_free_room_only() -> None:
    assert spill_action(True, 0, 5) == "append"
    assert spill_action(True, 4, 5) == "append"
    assert spill_action(True, 5, 5) == "full"  # exactly full: no entry's place taken
    assert spill_action(True, 7, 5) == "full"  # over a lowered bound


def test_is_expired_ttl_boundary() -> None:
    assert not is_expired(100.0, 100.0, 60.0)
    assert not is_expired(100.0, 159.999, 60.0)
    assert not is_expired(100.0, 160.0, 60.0)  # exactly ttl old: still valid
    assert is_expired(100.0, 160.001, 60.0)
    assert is_expired(100.0, 1e9, 60.0)
    assert not is_expired(100.0, 50.0, 60.0)  # clock stepped back: not expired
    assert is_expired(100.0, 100.001, 0.0)


# --------------------------------------------------------------------------------------------
# call_failed (circuit_gate)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "failed"),
    [
        ([retryable("http_503")] * 3, True),
        ([retryable("http_503"), DELIVERED, retryable("http_503")], False),
        ([retryable("http_503"), Outcome(status="already_exists")], False),
        ([retryable("http_503"), PERMANENT], False),
        ([retryable("parent_missing")] * 3, False),
        ([retryable("http_429", 2.0)] * 3, False),
        ([retryable("timeout")] * 2, True),
        ([retryable("connection")], True),
        ([retryable("http_507")], True),  # any 5xx
        ([retryable("http_429"), retryable("http_503")], True),  # the service failed part of it
        ([retryable("auth")], False),
        ([], False),
    ],
)
def test_call_failed(outcomes: list[Outcome], failed: bool) -> None:
    assert call_failed(outcomes) is failed


# --------------------------------------------------------------------------------------------
# SharedBreaker over LMDB
# --------------------------------------------------------------------------------------------


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_shared_breaker_transitions_are_shared_by_two_instances(store: Store) -> None:
    clock = Clock(1000.0)
    a = SharedBreaker(store, CFG, clock=clock)
    b = SharedBreaker(store, CFG, clock=clock)
    seen: list[tuple[str, str]] = []
    a.on_transition = lambda old, new: seen.append((old, new))
    for i in range(4):
        clock.t = 1000.0 + i
        assert (a if i % 2 else b).acquire() == "call"
        (a if i % 2 else b).record("call", False)
    assert b.state().failure_count == 4 and a.state().state == "closed"
    clock.t = 1004.0
    a.record("call", False)
    assert b.state().state == "open" and b.state().opened_at == 1004.0
    assert seen == [("closed", "open")]
    assert b.retry_at() == 1064.0
    clock.t = 1063.9
    assert b.acquire() is None and a.acquire() is None
    assert a.state().calls_not_permitted == 2
    clock.t = 1064.0
    assert a.acquire() == "trial"
    assert b.acquire() == "trial"
    assert a.acquire() == "trial"
    assert b.acquire() is None  # the 4th
    assert b.state().state == "half_open" and b.state().trials_started == 3
    a.record("trial", True)
    b.record("trial", True)
    assert a.state().state == "half_open" and a.state().trials_succeeded == 2
    b.record("trial", True)
    assert a.state().state == "closed" and a.state().trip_count == 1
    # on_transition reports what *this* instance changed: b closed it.
    assert seen == [("closed", "open"), ("open", "half_open")]
    # Reopen from a failed trial, then operator actions, seen from the other instance.
    for i in range(5):
        b.record("call", False)
    clock.t = 2000.0
    assert a.acquire() == "trial"
    a.record("trial", False)
    assert b.state().state == "open" and b.state().trip_count == 3 and b.state().opened_at == 2000.0
    b.force_open()
    clock.t = 10_000.0
    assert a.acquire() is None and a.state().state == "forced_open"
    a.reset()
    assert b.state().state == "closed" and b.acquire() == "call"
    b.disable()
    for _ in range(10):
        a.record("call", False)
    assert a.state().state == "disabled" and a.state().failure_count == 0 and a.acquire() == "call"


def test_shared_breaker_common_path_does_not_write(store: Store) -> None:
    b = SharedBreaker(store, CFG, clock=Clock())
    assert b.acquire() == "call"
    b.record("call", True)
    assert store.read(lambda txn: txn.get(b"circuit", db=store.db("state"))) is None
    b.record("call", False)
    assert b.state().failure_count == 1
    b.record("call", True)
    assert b.state().failure_count == 0


def test_shared_breaker_two_instances_race_for_the_last_trial(store: Store) -> None:
    clock = Clock(1000.0)
    a = SharedBreaker(store, CFG, clock=clock)
    b = SharedBreaker(store, CFG, clock=clock)
    for _ in range(5):
        a.record("call", False)
    clock.t = 1060.0
    assert a.acquire() == "trial" and b.acquire() == "trial"  # one slot left
    for _ in range(20):  # repeat the race: exactly one of the two gets the last slot every time
        barrier = threading.Barrier(2)
        results: list[str | None] = []

        def take(br: SharedBreaker) -> None:
            barrier.wait()
            results.append(br.acquire())

        threads = [threading.Thread(target=take, args=(x,)) for x in (a, b)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(results, key=str) == [None, "trial"]
        # Reopen with a failed trial and come back after recovery_timeout with 2 of 3 slots taken.
        state = a.state()
        assert state.trials_started == 3
        a.record("trial", False)
        clock.t += 60.0
        assert a.acquire() == "trial" and b.acquire() == "trial"


# -- across processes --------------------------------------------------------------------------

CHILD = """
import sys, msgspec
from pattern_tracker.operators.breaker import BreakerSettings
from pattern_tracker.state.circuit_store import SharedBreaker
from pattern_tracker.core.store import MIB, Store
path, now, action = sys.argv[1], float(sys.argv[2]), sys.argv[3]
store = Store.open(path, map_size=64 * MIB)
b = SharedBreaker(store, BreakerSettings(failure_threshold=5, recovery_timeout=60.0, half_open_attempts=3),
                  clock=lambda: now)
if action == "race":
    print("ready", flush=True)
    sys.stdin.readline()
    print("permit", b.acquire(), flush=True)
elif action == "force_open":
    b.force_open()
elif action == "acquire":
    print("permit", b.acquire(), flush=True)
elif action == "fail":
    b.record("call", False)
print(msgspec.json.encode(b.state()).decode(), flush=True)
store.close()
"""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_child(path: Path, now: float, action: str) -> tuple[str | None, BreakerState]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(now), action],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=child_env(),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    permit = None
    for line in lines[:-1]:
        if line.startswith("permit "):
            permit = line.split()[1]
    return (None if permit == "None" else permit), msgspec.json.decode(lines[-1], type=BreakerState)


def test_shared_breaker_state_is_shared_with_another_process(store: Store) -> None:
    clock = Clock(1000.0)
    here = SharedBreaker(store, CFG, clock=clock)
    # Another process opens the circuit by hand: this one sees it, with the store left open here.
    _, theirs = run_child(store.path, 1000.0, "force_open")
    assert theirs.state == "forced_open" and theirs.opened_at == 1000.0
    assert here.state().state == "forced_open"
    assert here.acquire() is None
    here.reset()
    # Failures recorded here and there add up; the other process sees the circuit open.
    for _ in range(3):
        here.record("call", False)
    _, theirs = run_child(store.path, 1003.0, "fail")
    assert theirs.failure_count == 4
    here.record("call", False)
    permit, theirs = run_child(store.path, 1010.0, "acquire")
    assert permit is None and theirs.state == "open" and theirs.opened_at == 1000.0
    assert theirs.failure_count == 5 and theirs.trip_count == 2
    assert theirs.calls_not_permitted == 2  # one refused here while forced open, one there (a reset keeps it)
    # After recovery_timeout the other process takes a trial; this one sees the slot taken.
    permit, theirs = run_child(store.path, 1060.0, "acquire")
    assert permit == "trial" and theirs.state == "half_open" and theirs.trials_started == 1
    assert here.state().trials_started == 1


def test_shared_breaker_state_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "reopen"
    s1 = Store.open(path, map_size=64 * MIB)
    for _ in range(5):
        SharedBreaker(s1, CFG, clock=Clock(50.0)).record("call", False)
    s1.close()
    _, theirs = run_child(path, 60.0, "acquire")  # nothing open here now: a fresh process reads it
    assert theirs.state == "open" and theirs.opened_at == 50.0
    s2 = Store.open(path, map_size=64 * MIB)
    try:
        assert s2 is not s1
        assert SharedBreaker(s2, CFG, clock=Clock(110.0)).acquire() == "trial"
    finally:
        s2.close()


def test_processes_racing_for_the_last_half_open_trial_get_one_permit(store: Store) -> None:
    clock = Clock(1000.0)
    here = SharedBreaker(store, CFG, clock=clock)
    for _ in range(5):
        here.record("call", False)
    clock.t = 1060.0
    assert here.acquire() == "trial" and here.acquire() == "trial"  # one slot left
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(store.path), "1061.0", "race"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=ROOT, env=child_env())
        for _ in range(4)
    ]
    try:
        for p in procs:  # every process has the store open before anyone asks
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    permits = [out.splitlines()[0].split()[1] for out, _ in outputs]
    assert sorted(permits) == ["None", "None", "None", "trial"]
    final = here.state()
    assert final.trials_started == 3 and final.calls_not_permitted == 3
