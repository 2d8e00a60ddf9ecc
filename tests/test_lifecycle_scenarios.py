"""Billing stories as tests: each scenario walks a customer through time with the test clock and
asserts what the customer is entitled to at each step. Timed events run through the job worker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import stigg

from entitle.jobs.service import Worker
from tests.conftest import LiveServer
from tests.support.clock import TestClock

MONTHLY_10 = {
    "pricing_type": "PAID",
    "pricing_models": [
        {
            "billing_model": "FLAT_FEE",
            "price_periods": [
                {"billing_period": "MONTHLY", "price": {"amount": 10, "currency": "usd"}},
                {"billing_period": "ANNUALLY", "price": {"amount": 100, "currency": "usd"}},
            ],
        }
    ],
}
MONTHLY_50 = {
    "pricing_type": "PAID",
    "pricing_models": [
        {
            "billing_model": "FLAT_FEE",
            "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": 50, "currency": "usd"}}],
        }
    ],
}


class Story:
    def __init__(self, server: LiveServer, client: stigg.Stigg, clock: TestClock) -> None:
        self.server, self.client, self.clock = server, client, clock
        self.worker = Worker(server.db)

    def pass_time(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        self.worker.drain()

    def limit(self, customer: str, feature: str) -> Any:
        result = self.client.v1.customers.check_entitlement(customer, feature_id=feature).data
        return result.usage_limit if result.is_granted else None

    def granted(self, customer: str, feature: str) -> bool:
        return bool(self.client.v1.customers.check_entitlement(customer, feature_id=feature).data.is_granted)

    def subscriptions(self, customer: str) -> list[tuple[str, str]]:
        return [(s.plan_id, s.status) for s in self.client.v1.subscriptions.list(customer_id=customer)]


@pytest.fixture
def story(server: LiveServer, client: stigg.Stigg, test_clock: TestClock) -> Story:
    c = client.v1
    c.features.create_feature(id="projects", display_name="Projects", feature_type="NUMBER", meter_type="FLUCTUATING")
    c.features.create_feature(id="sso", display_name="SSO", feature_type="BOOLEAN")
    c.features.create_feature(id="audit-log", display_name="Audit log", feature_type="BOOLEAN")
    c.products.create_product(id="app", display_name="App")
    c.plans.create(id="free", display_name="Free", product_id="app", pricing_type="FREE")
    c.plans.entitlements.create("free", entitlements=[{"type": "FEATURE", "id": "projects", "usage_limit": 1}])
    c.plans.publish("free", migration_type="NEW_CUSTOMERS")
    c.plans.create(id="pro", display_name="Pro", product_id="app")
    c.plans.entitlements.create(
        "pro",
        entitlements=[
            {"type": "FEATURE", "id": "projects", "usage_limit": 10},
            {"type": "FEATURE", "id": "sso"},
        ],
    )
    c.addons.create(id="more-projects", display_name="More projects", product_id="app")
    c.addons.entitlements.create(
        "more-projects", entitlements=[{"type": "FEATURE", "id": "projects", "usage_limit": 5, "behavior": "Increment"}]
    )
    c.addons.publish("more-projects", migration_type="NEW_CUSTOMERS")
    c.plans.update(
        "pro",
        charges=MONTHLY_10,
        compatible_addon_ids=["more-projects"],
        default_trial_config={"duration": 14, "units": "DAY"},
    )
    c.plans.publish("pro", migration_type="NEW_CUSTOMERS")
    c.plans.create(id="business", display_name="Business", product_id="app", parent_plan_id="pro")
    c.plans.entitlements.create("business", entitlements=[{"type": "FEATURE", "id": "audit-log"}])
    c.plans.update("business", charges=MONTHLY_50, compatible_addon_ids=["more-projects"])
    c.plans.publish("business", migration_type="NEW_CUSTOMERS")
    c.products.update_product(
        "app",
        product_settings={
            "subscription_cancellation_time": "END_OF_BILLING_PERIOD",
            "subscription_end_setup": "DOWNGRADE_TO_FREE",
            "subscription_start_setup": "PLAN_SELECTION",
            "downgrade_plan_id": "free",
        },
    )
    c.customers.provision(id="acme")
    return Story(server, client, test_clock)


def test_trial_converts_to_paid(story: Story) -> None:
    sub = story.client.v1.subscriptions.provision(customer_id="acme", plan_id="pro").data.subscription
    assert sub is not None and sub.status == "IN_TRIAL"
    assert sub.trial_end_date == story.clock.now() + timedelta(days=14)
    assert story.limit("acme", "projects") == 10
    story.pass_time(timedelta(days=13))
    assert story.subscriptions("acme") == [("pro", "IN_TRIAL")]
    story.pass_time(timedelta(days=2))
    assert story.subscriptions("acme") == [("pro", "ACTIVE")]
    assert story.granted("acme", "sso")


def test_trial_that_cancels_falls_back_to_the_free_plan(story: Story) -> None:
    story.client.v1.subscriptions.provision(
        customer_id="acme",
        plan_id="pro",
        trial_override_configuration={"is_trial": True, "trial_end_behavior": "CANCEL_SUBSCRIPTION"},
    )
    assert story.granted("acme", "sso")
    story.pass_time(timedelta(days=15))
    assert sorted(story.subscriptions("acme")) == [("free", "ACTIVE"), ("pro", "EXPIRED")]
    assert not story.granted("acme", "sso")
    assert story.limit("acme", "projects") == 1


def test_downgrade_is_scheduled_then_applied_at_period_end(story: Story) -> None:
    story.client.v1.subscriptions.provision(
        customer_id="acme", plan_id="business", trial_override_configuration={"is_trial": False}
    )
    assert story.granted("acme", "audit-log")
    assert story.limit("acme", "projects") == 10  # inherited from pro
    result = story.client.v1.subscriptions.provision(customer_id="acme", plan_id="pro").data
    assert result.is_scheduled
    assert result.subscription is not None and result.subscription.plan_id == "business"
    updates = result.subscription.future_updates or []
    assert [(u.subscription_schedule_type, u.target_package and u.target_package.id) for u in updates] == [
        ("DOWNGRADE", "pro")
    ]
    story.pass_time(timedelta(days=20))
    assert story.granted("acme", "audit-log")  # still business until the period ends
    story.pass_time(timedelta(days=12))  # Jan 15 + 31 days: the period ended
    assert sorted(story.subscriptions("acme")) == [("business", "CANCELED"), ("pro", "ACTIVE")]
    assert not story.granted("acme", "audit-log")
    assert story.granted("acme", "sso")


def test_upgrade_applies_immediately(story: Story) -> None:
    story.client.v1.subscriptions.provision(customer_id="acme", plan_id="free")
    result = story.client.v1.subscriptions.provision(customer_id="acme", plan_id="pro").data
    assert not result.is_scheduled
    assert sorted(story.subscriptions("acme")) == [("free", "CANCELED"), ("pro", "IN_TRIAL")]
    assert story.limit("acme", "projects") == 10


def test_addon_added_mid_period_increments_the_limit(story: Story) -> None:
    sub = story.client.v1.subscriptions.provision(
        customer_id="acme", plan_id="pro", trial_override_configuration={"is_trial": False}
    ).data.subscription
    assert sub is not None
    story.pass_time(timedelta(days=10))
    updated = story.client.v1.subscriptions.update(sub.id, addons=[{"id": "more-projects", "quantity": 3}]).data
    assert [(a.id, a.quantity) for a in updated.addons or []] == [("more-projects", 3)]
    assert story.limit("acme", "projects") == 25
    story.client.v1.subscriptions.update(sub.id, addons=[])
    assert story.limit("acme", "projects") == 10


def test_migrate_after_a_new_plan_version(story: Story) -> None:
    sub = story.client.v1.subscriptions.provision(
        customer_id="acme", plan_id="pro", trial_override_configuration={"is_trial": False}
    ).data.subscription
    assert sub is not None
    c = story.client.v1
    c.plans.create_draft("pro")
    c.plans.entitlements.update("projects", plan_id="pro", type="FEATURE", usage_limit=20)
    c.plans.publish("pro", migration_type="NEW_CUSTOMERS")
    assert story.limit("acme", "projects") == 10  # existing subscriptions keep their version
    c.customers.provision(id="newcomer")
    c.subscriptions.provision(customer_id="newcomer", plan_id="pro", trial_override_configuration={"is_trial": False})
    assert story.limit("newcomer", "projects") == 20
    c.subscriptions.migrate(sub.id, subscription_migration_time="IMMEDIATE")
    assert story.limit("acme", "projects") == 20


def test_promotional_entitlement_expires(story: Story) -> None:
    story.client.v1.subscriptions.provision(customer_id="acme", plan_id="free")
    story.client.v1.customers.promotional_entitlements.create(
        "acme",
        promotional_entitlements=[
            {
                "feature_id": "sso",
                "period": "1 week",
                **dict.fromkeys(
                    [
                        "custom_end_date",
                        "usage_limit",
                        "has_unlimited_usage",
                        "has_soft_limit",
                        "is_visible",
                        "enum_values",
                        "reset_period",
                        "monthly_reset_period_configuration",
                        "weekly_reset_period_configuration",
                        "yearly_reset_period_configuration",
                    ]
                ),
            }
        ],
    )
    assert story.granted("acme", "sso")
    story.pass_time(timedelta(days=6))
    assert story.granted("acme", "sso")
    story.pass_time(timedelta(days=2))
    assert not story.granted("acme", "sso")
    assert story.limit("acme", "projects") == 1  # the plan is untouched


def test_cancel_at_period_end_then_downgrade_to_free(story: Story) -> None:
    sub = story.client.v1.subscriptions.provision(
        customer_id="acme", plan_id="pro", trial_override_configuration={"is_trial": False}
    ).data.subscription
    assert sub is not None
    canceled = story.client.v1.subscriptions.cancel(sub.id).data  # the product's default: end of period
    assert canceled.status == "ACTIVE"
    assert canceled.end_date == sub.current_billing_period_end
    story.pass_time(timedelta(days=30))
    assert story.granted("acme", "sso")
    story.pass_time(timedelta(days=2))
    assert sorted(story.subscriptions("acme")) == [("free", "ACTIVE"), ("pro", "CANCELED")]
    assert story.limit("acme", "projects") == 1


def test_a_year_of_monthly_renewals_keeps_the_anchor(story: Story) -> None:
    story.clock.set(story.clock.now().replace(day=31, month=1))
    sub = story.client.v1.subscriptions.provision(
        customer_id="acme", plan_id="pro", trial_override_configuration={"is_trial": False}
    ).data.subscription
    assert sub is not None
    ends = []
    for _ in range(12):
        current = story.client.v1.subscriptions.retrieve(sub.id).data
        assert current.current_billing_period_end is not None
        ends.append(current.current_billing_period_end.day)
        story.pass_time(current.current_billing_period_end - story.clock.now())
    assert ends == [28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 31]


def test_publishing_to_all_customers_moves_existing_subscriptions(story: Story) -> None:
    c = story.client.v1
    c.subscriptions.provision(customer_id="acme", plan_id="pro", trial_override_configuration={"is_trial": False})
    c.customers.provision(id="other")
    c.subscriptions.provision(customer_id="other", plan_id="free")
    c.plans.create_draft("pro")
    c.plans.entitlements.update("projects", plan_id="pro", type="FEATURE", usage_limit=42)
    task = c.plans.publish("pro", migration_type="ALL_CUSTOMERS").data.task_id
    assert task
    assert story.limit("acme", "projects") == 10  # the migration runs as a job, not inside publish
    story.worker.drain()
    assert story.limit("acme", "projects") == 42
    assert story.limit("other", "projects") == 1  # another plan: untouched


@pytest.mark.parametrize("cancellation_time", ["IMMEDIATE", "END_OF_BILLING_PERIOD", None])
def test_an_end_date_with_another_cancellation_time_is_refused_not_ignored(
    story: Story, cancellation_time: str | None
) -> None:
    """`endDate` says when to end; with IMMEDIATE or the end of the period (sent, or the product's default)
    it used to be dropped and the subscription ended at another time than the one asked for."""
    sub = story.client.v1.subscriptions.provision(
        customer_id="acme", plan_id="pro", trial_override_configuration={"is_trial": False}
    ).data.subscription
    assert sub is not None
    asked = story.clock.now() + timedelta(days=10)
    options: dict[str, Any] = {"cancellation_time": cancellation_time} if cancellation_time else {}
    with pytest.raises(stigg.BadRequestError) as refused:
        story.client.v1.subscriptions.cancel(sub.id, end_date=asked, **options)
    assert refused.value.body["error"]["code"] == "INVALID_ARGUMENT"
    assert "SPECIFIC_DATE" in refused.value.body["error"]["message"]
    kept = story.client.v1.subscriptions.retrieve(sub.id).data
    assert (kept.status, kept.end_date) == ("ACTIVE", None)
    ended = story.client.v1.subscriptions.cancel(sub.id, cancellation_time="SPECIFIC_DATE", end_date=asked).data
    assert (ended.status, ended.end_date) == ("ACTIVE", asked)
