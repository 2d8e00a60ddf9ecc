from __future__ import annotations

from datetime import timedelta

import stigg

from tests.support.clock import TestClock


def _app(client: stigg.Stigg) -> None:
    """Product `app` and the features its plans grant (`sso`) and price per unit (`seats`)."""
    client.v1.features.create_feature(id="sso", display_name="SSO", feature_type="BOOLEAN")
    client.v1.features.create_feature(id="seats", display_name="Seats", feature_type="NUMBER", meter_type="FLUCTUATING")
    client.v1.products.create_product(id="app", display_name="App")


def _plan(client: stigg.Stigg, plan_id: str, monthly: int, **extra: object) -> None:
    client.v1.plans.create(id=plan_id, display_name=plan_id.title(), product_id="app")
    client.v1.plans.entitlements.create(plan_id, entitlements=[{"type": "FEATURE", "id": "sso"}])
    client.v1.plans.update(
        plan_id,
        charges={
            "pricing_type": "PAID",
            "pricing_models": [
                {
                    "billing_model": "FLAT_FEE",
                    "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": monthly, "currency": "usd"}}],
                },
                {
                    "billing_model": "PER_UNIT",
                    "feature_id": "seats",
                    "tiers_mode": "GRADUATED",
                    "price_periods": [
                        {
                            "billing_period": "MONTHLY",
                            "tiers": [
                                {"up_to": 5, "unit_price": {"amount": 4, "currency": "usd"}},
                                {"unit_price": {"amount": 2, "currency": "usd"}},
                            ],
                        }
                    ],
                },
            ],
        },
        **extra,  # type: ignore[arg-type]
    )
    client.v1.plans.publish(plan_id, migration_type="NEW_CUSTOMERS")


def test_preview_prices_new_subscriptions_upgrades_and_downgrades(client: stigg.Stigg, test_clock: TestClock) -> None:
    c = client.v1
    _app(client)
    _plan(client, "pro", 10)
    _plan(client, "business", 50)
    c.coupons.create(
        id="half",
        name="Half",
        percent_off=50,
        amounts_off=None,
        description=None,
        duration_in_months=None,
        metadata=None,
    )
    c.customers.provision(id="acme")

    new = c.subscriptions.preview(
        customer_id="acme", plan_id="pro", billable_features=[{"feature_id": "seats", "quantity": 8}]
    ).data
    assert new.immediate_invoice.total == 10 + 5 * 4 + 3 * 2
    assert new.recurring_invoice is not None and new.recurring_invoice.total == 36
    assert {line.description for line in new.immediate_invoice.lines or []} == {"Pro", "Pro (seats)"}

    discounted = c.subscriptions.preview(customer_id="acme", plan_id="pro", applied_coupon={"coupon_id": "half"}).data
    assert discounted.recurring_invoice is not None
    assert (discounted.recurring_invoice.sub_total, discounted.recurring_invoice.total) == (14, 7)

    c.subscriptions.provision(
        customer_id="acme", plan_id="pro", charges=[{"id": "seats", "quantity": 1, "type": "FEATURE"}]
    )
    test_clock.advance(timedelta(days=31) / 2)  # half of Jan 15 -> Feb 15
    upgrade = c.subscriptions.preview(customer_id="acme", plan_id="business").data
    assert not upgrade.is_plan_downgrade
    # credit half of (10 + 4), charge half of (50 + 4)
    assert upgrade.immediate_invoice.total == 20
    back = c.subscriptions.preview(customer_id="acme", plan_id="pro").data
    assert not back.is_plan_downgrade  # same plan, same price: not a downgrade

    c.subscriptions.provision(customer_id="acme", plan_id="business", schedule_strategy="IMMEDIATE")
    down = c.subscriptions.preview(customer_id="acme", plan_id="pro").data
    assert down.is_plan_downgrade and down.has_scheduled_updates
    assert down.immediate_invoice.total == 0
    assert [s.plan_id for s in c.subscriptions.list(customer_id="acme", status=["ACTIVE"])] == ["business"]


def test_preview_of_a_trial_plan_charges_nothing_now_exactly_when_provisioning_starts_a_trial(
    client: stigg.Stigg,
) -> None:
    """The demo's case: a customer on the free plan previews the paid plan with a 14-day trial. Provisioning
    ends the free subscription and starts the trial, so nothing is due now; a customer who already had the
    trial gets none and is charged at once, in the preview as when provisioned."""
    c = client.v1
    _app(client)
    c.plans.create(id="free", display_name="Free", product_id="app", pricing_type="FREE")
    c.plans.publish("free", migration_type="NEW_CUSTOMERS")
    trial = {"duration": 14, "units": "DAY", "trial_end_behavior": "CONVERT_TO_PAID"}
    _plan(client, "pro", 29, default_trial_config=trial)
    c.customers.provision(id="ada")
    c.subscriptions.provision(customer_id="ada", plan_id="free")

    preview = c.subscriptions.preview(customer_id="ada", plan_id="pro").data
    assert preview.immediate_invoice.total == 0
    assert preview.recurring_invoice is not None and preview.recurring_invoice.total == 29 + 4
    provisioned = c.subscriptions.provision(customer_id="ada", plan_id="pro").data
    assert provisioned.subscription is not None and provisioned.subscription.status == "IN_TRIAL"

    no_trial = c.subscriptions.preview(
        customer_id="ada", plan_id="pro", trial_override_configuration={"is_trial": False}
    ).data
    assert no_trial.immediate_invoice.total > 0

    c.subscriptions.provision(customer_id="ada", plan_id="free", schedule_strategy="IMMEDIATE")
    again = c.subscriptions.preview(customer_id="ada", plan_id="pro").data  # the trial was used
    assert again.immediate_invoice.total == 29 + 4
    assert c.subscriptions.provision(customer_id="ada", plan_id="pro").data.subscription.status == "ACTIVE"


def test_what_is_due_now_on_a_change_mid_period_is_discounted_by_the_coupon_as_the_renewal_is(
    client: stigg.Stigg, test_clock: TestClock
) -> None:
    # The billing provider prorates what is paid, the discount included: a 20% coupon takes 20% off the
    # credit for the unused time and off the charge for the rest of the period, as it does off a renewal.
    c = client.v1
    _app(client)
    _plan(client, "pro", 10)
    _plan(client, "business", 50)
    for coupon_id, percent in (("twenty", 20), ("half", 50)):
        c.coupons.create(
            id=coupon_id,
            name=coupon_id,
            percent_off=percent,
            amounts_off=None,
            description=None,
            duration_in_months=None,
            metadata=None,
        )
    c.customers.provision(id="acme")
    c.subscriptions.provision(
        customer_id="acme",
        plan_id="pro",
        charges=[{"id": "seats", "quantity": 1, "type": "FEATURE"}],
        applied_coupon={"coupon_id": "twenty"},
    )
    test_clock.advance(timedelta(days=31) / 2)  # half of Jan 15 -> Feb 15

    same = c.subscriptions.preview(customer_id="acme", plan_id="business", applied_coupon={"coupon_id": "twenty"}).data
    # half of 80% of (50 + 4), less half of 80% of (10 + 4) paid
    assert same.immediate_invoice.total == 16
    assert same.recurring_invoice is not None and same.recurring_invoice.total == 43.2
    # The credit is of what was paid (20% off), the charge at the new coupon (50% off): 13.50 - 5.60.
    other = c.subscriptions.preview(customer_id="acme", plan_id="business", applied_coupon={"coupon_id": "half"}).data
    assert other.immediate_invoice.total == 7.9
    # Without a coupon now, the credit is still of what was paid: 27 - 5.60.
    bare = c.subscriptions.preview(customer_id="acme", plan_id="business").data
    assert bare.immediate_invoice.total == 21.4


def test_an_upgrade_to_another_billing_period_charges_the_whole_new_period_less_the_unused_time(
    client: stigg.Stigg, test_clock: TestClock
) -> None:
    """Monthly at 10 to a plan billed yearly at 600, half-way through the month: the new period (a year) starts
    now, so what is due is the year's price less the unused half month (600 - 5). The preview scaled the
    year's price by the month's unused share (295): a share of a period the customer does not buy."""
    c = client.v1
    _app(client)
    prices = {"pro": {"MONTHLY": 10, "ANNUALLY": 100}, "business": {"MONTHLY": 50, "ANNUALLY": 600}}
    for plan_id, periods in prices.items():
        c.plans.create(id=plan_id, display_name=plan_id.title(), product_id="app")
        c.plans.entitlements.create(plan_id, entitlements=[{"type": "FEATURE", "id": "sso"}])
        price_periods = [
            {"billing_period": period, "price": {"amount": amount, "currency": "usd"}}
            for period, amount in periods.items()
        ]
        model = {"billing_model": "FLAT_FEE", "price_periods": price_periods}
        c.plans.update(plan_id, charges={"pricing_type": "PAID", "pricing_models": [model]})
        c.plans.publish(plan_id, migration_type="NEW_CUSTOMERS")
    c.customers.provision(id="acme")
    c.subscriptions.provision(customer_id="acme", plan_id="pro", billing_period="MONTHLY")
    test_clock.advance(timedelta(days=31) / 2)  # half of Jan 15 -> Feb 15

    yearly = c.subscriptions.preview(customer_id="acme", plan_id="business", billing_period="ANNUALLY").data
    assert not yearly.is_plan_downgrade and not yearly.has_scheduled_updates
    assert yearly.immediate_invoice.total == 600 - 5
    period = yearly.billing_period_range
    assert period is not None and (period.end - period.start).days == 365  # the year starting now
    # The same period: the remaining half of the month at the new price, less the unused half (25 - 5).
    monthly = c.subscriptions.preview(customer_id="acme", plan_id="business", billing_period="MONTHLY").data
    assert monthly.immediate_invoice.total == 20
