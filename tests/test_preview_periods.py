"""The preview's billing period is the one the change will bill, on SQLite and PostgreSQL: whatever the
current subscription (none, monthly or annual, active or in its trial), the plan asked for (an upgrade or
a downgrade, monthly or annual), `scheduleStrategy` and whether the product allows several subscriptions
(then nothing is replaced), the preview says whether provisioning will wait for the end of the period
(`hasScheduledUpdates`) and whether it replaces a plan by a cheaper one (`isPlanDowngrade`) exactly as
provisioning then does, and its `billingPeriodRange` (and its invoices') is the billing period the
subscription holding the new plan is in once the change is made: from the current period's end for a
change waiting for it, from now for one made at once. The recurring invoice charges the new plan's price
for that period; nothing is due now for a change that waits, the whole price for a new subscription or
one replacing a trial."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta

import pytest
import stigg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entitle.jobs.service import Worker
from tests.conftest import LiveServer
from tests.support.clock import TestClock

_ids = itertools.count()
PRICES = {"small": {"MONTHLY": 10, "ANNUALLY": 100}, "big": {"MONTHLY": 50, "ANNUALLY": 500}}
CHEAPEST_FIRST = [("small", "ANNUALLY"), ("small", "MONTHLY"), ("big", "ANNUALLY"), ("big", "MONTHLY")]
"""By price a month: a change to one ranked lower is a downgrade."""


class Catalog:
    """The two plans in a product of one subscription at a time, and in one allowing several."""

    def __init__(self, client: stigg.Stigg) -> None:
        n = next(_ids)
        self.plans: dict[tuple[bool, str], str] = {}
        c = client.v1
        for multiple in (False, True):
            product = f"pvp{n}{'m' if multiple else ''}"
            c.products.create_product(id=product, display_name="App", multiple_subscriptions=multiple)
            for size in PRICES:
                plan = self.plans[(multiple, size)] = f"{product}{size}"
                c.plans.create(id=plan, display_name=plan, product_id=product)
                periods = [
                    {"billing_period": period, "price": {"amount": amount, "currency": "usd"}}
                    for period, amount in PRICES[size].items()
                ]
                c.plans.update(
                    plan,
                    charges={
                        "pricing_type": "PAID",
                        "pricing_models": [{"billing_model": "FLAT_FEE", "price_periods": periods}],  # type: ignore[list-item]
                    },
                )
                c.plans.publish(plan, migration_type="NEW_CUSTOMERS")


@pytest.fixture
def catalog(module_server: LiveServer, test_clock: TestClock) -> Iterator[Catalog]:
    yield Catalog(module_server.stigg())


PERIODS = st.sampled_from(["MONTHLY", "ANNUALLY"])


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    multiple=st.booleans(),
    current=st.one_of(st.none(), st.tuples(st.sampled_from(["small", "big"]), PERIODS, st.booleans())),
    asked=st.tuples(st.sampled_from(["small", "big"]), PERIODS),
    strategy=st.sampled_from([None, "END_OF_BILLING_PERIOD", "IMMEDIATE"]),
    start_after=st.integers(min_value=0, max_value=366 * 24 * 60),
    elapsed=st.integers(min_value=1, max_value=27 * 24 * 60),
)
def test_the_preview_bills_the_period_the_change_starts(
    module_server: LiveServer,
    catalog: Catalog,
    test_clock: TestClock,
    multiple: bool,
    current: tuple[str, str, bool] | None,
    asked: tuple[str, str],
    strategy: str | None,
    start_after: int,
    elapsed: int,
) -> None:
    c = module_server.stigg().v1
    customer = f"pvc{next(_ids)}"
    # Forward only, from any minute of the year (month ends included), so no job of an earlier example
    # comes due out of order.
    test_clock.advance(timedelta(minutes=start_after))
    c.customers.provision(id=customer)
    before: set[str] = set()
    current_end = None
    if current is not None:
        size, period, in_trial = current
        trial = {"is_trial": True, "trial_end_date": test_clock.now() + timedelta(days=30)} if in_trial else None
        had = c.subscriptions.provision(
            customer_id=customer,
            plan_id=catalog.plans[(multiple, size)],
            billing_period=period,  # type: ignore[arg-type]
            **({"trial_override_configuration": trial} if trial else {}),  # type: ignore[arg-type]
        ).data
        assert had.subscription is not None
        before.add(had.subscription.id)
        current_end = had.subscription.current_billing_period_end
        test_clock.advance(timedelta(minutes=elapsed))
    size, period = asked
    ask = {"customer_id": customer, "plan_id": catalog.plans[(multiple, size)], "billing_period": period}
    if strategy is not None:
        ask["schedule_strategy"] = strategy
    preview = c.subscriptions.preview(**ask).data  # type: ignore[arg-type]
    made = c.subscriptions.provision(**ask).data  # type: ignore[arg-type]
    assert made.subscription is not None

    scheduled = [u for u in made.subscription.future_updates or [] if u.subscription_schedule_type == "DOWNGRADE"]
    assert bool(preview.has_scheduled_updates) == bool(scheduled)
    replaced = current is not None and not multiple
    cheaper = current is not None and CHEAPEST_FIRST.index(asked) < CHEAPEST_FIRST.index(current[:2])
    assert bool(preview.is_plan_downgrade) == (replaced and cheaper)
    if scheduled:
        assert preview.immediate_invoice.total == 0
        test_clock.set(scheduled[0].scheduled_execution_time)
        Worker(module_server.db).drain()
    elif not replaced or (current is not None and current[2]):  # new, or replacing a trial: paid in full now
        assert preview.immediate_invoice.total == PRICES[size][period]
    live = list(c.subscriptions.list(customer_id=customer, status=["ACTIVE", "IN_TRIAL"]))  # type: ignore[list-item]
    (holder,) = [sub for sub in live if sub.id not in before]
    assert holder.plan_id == catalog.plans[(multiple, size)]
    assert len(live) == (2 if multiple and current is not None else 1)
    billed = (holder.current_billing_period_start, holder.current_billing_period_end)
    assert billed[0] == test_clock.now()  # the new plan's billing starts with it
    # An immediate change between plans billed for the same period keeps the paid cycle: the new plan's
    # first period is the rest of the current one (what the proration charges), then the price recurs.
    kept = replaced and not scheduled and current is not None and not current[2] and current[1] == period
    if kept:
        assert billed[1] == current_end
    assert preview.billing_period_range is not None
    assert (preview.billing_period_range.start, preview.billing_period_range.end) == billed
    assert preview.recurring_invoice is not None and preview.recurring_invoice.total == PRICES[size][period]
    assert preview.immediate_invoice.billing_period_range is not None
    immediate = preview.immediate_invoice.billing_period_range
    assert (immediate.start, immediate.end) == billed
    recurring = preview.recurring_invoice.billing_period_range
    assert recurring is not None
    if kept:
        assert recurring.start == billed[1]
        days = (recurring.end - recurring.start).days
        assert days in ((28, 29, 30, 31) if period == "MONTHLY" else (365, 366))
    else:
        assert (recurring.start, recurring.end) == billed
