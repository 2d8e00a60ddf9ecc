"""When a promotional grant ends: pure arithmetic on the contract's period names."""

from __future__ import annotations

from datetime import datetime

from dateutil.relativedelta import relativedelta

PROMO_PERIODS: dict[str, relativedelta | None] = {
    "1 week": relativedelta(weeks=1),
    "1 month": relativedelta(months=1),
    "6 month": relativedelta(months=6),
    "1 year": relativedelta(years=1),
    "lifetime": None,
}


def promotion_end(period: str, start: datetime, custom_end: datetime | None) -> datetime | None:
    """End of a grant starting at `start`; None means it never ends. Months clamp to month ends
    (a grant from Jan 31 for "1 month" ends Feb 28/29), as relativedelta does."""
    if period == "custom":
        if custom_end is None:
            raise ValueError("period 'custom' needs customEndDate")
        if custom_end <= start:
            raise ValueError("customEndDate must be in the future")
        return custom_end
    if custom_end is not None:
        # Its own length would end the grant at another date than the one sent: refused, not ignored.
        raise ValueError(f"customEndDate is used only with period 'custom', not '{period}'")
    if period not in PROMO_PERIODS:
        raise ValueError(f"unknown period {period!r}")
    step = PROMO_PERIODS[period]
    return None if step is None else start + step
