"""A negotiated trial (issue 17): `trialOverrideConfiguration.trialEndDate` on a plan without a default trial,
and what happens on that date — converted to paid or ended — driven by the job worker and the test clock,
on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
import stigg

from entitle.jobs.service import Worker
from tests.conftest import LiveServer
from tests.support.clock import TestClock


@pytest.fixture
def deal(server: LiveServer, client: stigg.Stigg, test_clock: TestClock) -> Worker:
    c = client.v1
    c.features.create_feature(id="sso", display_name="SSO", feature_type="BOOLEAN")
    c.products.create_product(id="app", display_name="App")
    c.plans.create(id="enterprise", display_name="Enterprise", product_id="app")
    c.plans.entitlements.create("enterprise", entitlements=[{"type": "FEATURE", "id": "sso"}])
    c.plans.update(
        "enterprise",
        charges={  # type: ignore[arg-type]
            "pricing_type": "PAID",
            "pricing_models": [
                {
                    "billing_model": "FLAT_FEE",
                    "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": 900, "currency": "usd"}}],
                }
            ],
        },
    )
    c.plans.publish("enterprise", migration_type="NEW_CUSTOMERS")
    c.customers.provision(id="acme")
    return Worker(server.db)


@pytest.mark.parametrize(
    ("behavior", "after"),
    [("CONVERT_TO_PAID", ("ACTIVE", True)), ("CANCEL_SUBSCRIPTION", ("EXPIRED", False))],
)
def test_a_trial_ends_on_the_negotiated_date_as_agreed(
    client: stigg.Stigg, test_clock: TestClock, deal: Worker, behavior: str, after: tuple[str, bool]
) -> None:
    c = client.v1
    ends = test_clock.now() + timedelta(days=45, hours=3)  # not a whole trial unit: a date a deal names
    made = c.subscriptions.provision(
        customer_id="acme",
        plan_id="enterprise",
        id="sub-deal",
        trial_override_configuration={"is_trial": True, "trial_end_date": ends, "trial_end_behavior": behavior},
    ).data.subscription
    assert made is not None
    assert (made.status, made.trial_end_date) == ("IN_TRIAL", ends)
    assert made.trial is not None and made.trial.trial_end_behavior == behavior
    # The first paid period starts when the trial ends.
    assert made.billing_cycle_anchor == ends
    assert c.customers.check_entitlement("acme", feature_id="sso").data.is_granted

    test_clock.advance(timedelta(days=45, hours=2, minutes=59))
    deal.drain()
    assert c.subscriptions.retrieve("sub-deal").data.status == "IN_TRIAL"
    test_clock.advance(timedelta(minutes=1))
    deal.drain()
    status, granted = after
    sub = c.subscriptions.retrieve("sub-deal").data
    assert sub.status == status
    assert c.customers.check_entitlement("acme", feature_id="sso").data.is_granted is granted
    if status == "EXPIRED":
        assert sub.end_date == ends and sub.cancel_reason == "TRIAL_ENDED"
    else:
        assert sub.current_billing_period_start == ends and sub.end_date is None


def test_a_negotiated_trial_end_is_refused_in_the_past_and_moved_by_an_update(
    client: stigg.Stigg, test_clock: TestClock, deal: Worker
) -> None:
    c = client.v1
    with pytest.raises(stigg.BadRequestError, match="trialEndDate"):
        c.subscriptions.provision(
            customer_id="acme",
            plan_id="enterprise",
            trial_override_configuration={"is_trial": True, "trial_end_date": test_clock.now() - timedelta(days=1)},
        )
    # Without a date and without a default trial on the plan, a trial has no end: refused too.
    with pytest.raises(stigg.BadRequestError, match="trialEndDate"):
        c.subscriptions.provision(
            customer_id="acme", plan_id="enterprise", trial_override_configuration={"is_trial": True}
        )
    assert c.subscriptions.list(customer_id="acme").data == []

    first = test_clock.now() + timedelta(days=10)
    c.subscriptions.provision(
        customer_id="acme",
        plan_id="enterprise",
        id="sub-deal",
        trial_override_configuration={
            "is_trial": True,
            "trial_end_date": first,
            "trial_end_behavior": "CANCEL_SUBSCRIPTION",
        },
    )
    later = first + timedelta(days=20)
    assert c.subscriptions.update("sub-deal", trial_end_date=later).data.trial_end_date == later
    test_clock.advance(timedelta(days=11))
    deal.drain()  # the first date's job finds the trial moved
    assert c.subscriptions.retrieve("sub-deal").data.status == "IN_TRIAL"
    test_clock.advance(timedelta(days=20))
    deal.drain()
    assert c.subscriptions.retrieve("sub-deal").data.status == "EXPIRED"
