"""Pure retry rules for jobs."""

from __future__ import annotations

import random
from datetime import timedelta

BASE_DELAY = timedelta(seconds=2)
MAX_DELAY = timedelta(hours=1)


def backoff_delay(
    attempts: int,
    *,
    base: timedelta = BASE_DELAY,
    cap: timedelta = MAX_DELAY,
    rng: random.Random | None = None,
) -> timedelta:
    """Delay before the next try after `attempts` failed tries: exponential, capped, with jitter.

    The un-jittered delay is base * 2**(attempts-1), capped at `cap`; the jitter draws uniformly from
    its upper half, so retries of jobs that failed together spread out but never come sooner than
    half the nominal delay.
    """
    if attempts < 1:
        raise ValueError("attempts counts failed tries and starts at 1")
    nominal = min(cap.total_seconds(), base.total_seconds() * 2 ** min(attempts - 1, 62))
    draw = (rng or random).uniform(0.5, 1.0)
    return timedelta(seconds=nominal * draw)
