"""A plan change that waits for its first payment (PAYMENT_PENDING) leaves the customer on its current
plan meanwhile, as Stigg documents for a payment that fails during an update ("the customer retains
access to the entitlements from before the attempted update"): the current subscription ends when the
new one activates, and stays when the payment fails, never comes (settlement window) or the pending one
is cancelled; a new provisioning meanwhile replaces the pending one. On both databases, with a payment
gate that always waits (the Stripe flow itself is in billing/test_widgets_browser.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stigg
from sqlalchemy.orm import Session

from entitle.environments.service import ensure_environment
from entitle.subscriptions import cancellation, lifecycle
from entitle.subscriptions.hooks import install_payment_gate
from entitle.subscriptions.models import Subscription
from tests.conftest import LiveServer
from tests.test_core_path import build_catalog


class AlwaysCharge:
    def requires_payment(self, session: Session, subscription: Subscription) -> bool:
        return True


@pytest.fixture
def gated() -> Iterator[None]:
    install_payment_gate(AlwaysCharge())
    yield
    install_payment_gate(None)


def statuses(client: stigg.Stigg, customer: str) -> dict[str, tuple[str, str]]:
    """Every subscription of the customer, ended ones too: id -> (plan, status)."""
    return {s.id: (s.plan_id, s.status) for s in client.v1.subscriptions.list(customer_id=customer).data}


def on_free(client: stigg.Stigg, customer: str) -> str:
    client.v1.customers.provision(id=customer)
    sub = client.v1.subscriptions.provision(customer_id=customer, plan_id="free").data.subscription
    assert sub is not None and sub.status == "ACTIVE"
    return sub.id


def pending_pro(client: stigg.Stigg, customer: str) -> str:
    sub = client.v1.subscriptions.provision(customer_id=customer, plan_id="pro").data.subscription
    assert sub is not None and sub.status == "PAYMENT_PENDING"
    return sub.id


def limit(client: stigg.Stigg, customer: str, feature: str) -> float | None:
    return client.v1.customers.check_entitlement(customer, feature_id=feature).data.usage_limit


def test_the_current_plan_stays_until_the_upgrade_is_paid_for(
    server: LiveServer, client: stigg.Stigg, gated: None
) -> None:
    build_catalog(client)
    client.v1.products.update_product(
        "main",
        product_settings={
            "subscription_cancellation_time": "IMMEDIATE",
            "subscription_end_setup": "DOWNGRADE_TO_FREE",
            "subscription_start_setup": "PLAN_SELECTION",
            "downgrade_plan_id": "free",
        },
    )
    env = ensure_environment(server.db, "development").pk

    # Paid: the pending upgrade activates and the Free subscription it replaces ends then, not before.
    free, pro = on_free(client, "paid"), pending_pro(client, "paid")
    assert statuses(client, "paid") == {free: ("free", "ACTIVE"), pro: ("pro", "PAYMENT_PENDING")}
    assert limit(client, "paid", "seats") == 1  # Free's entitlements meanwhile
    assert not client.v1.customers.check_entitlement("paid", feature_id="sso").data.is_granted
    failed = lifecycle.payment_failed(server.db, env, pro)
    assert failed.sub.status == "PAYMENT_PENDING"
    assert statuses(client, "paid")[free] == ("free", "ACTIVE")  # a failed attempt changes nothing
    lifecycle.payment_succeeded(server.db, env, pro)
    assert statuses(client, "paid") == {free: ("free", "CANCELED"), pro: ("pro", "ACTIVE")}
    ended = client.v1.subscriptions.retrieve(free).data
    assert ended.cancel_reason == "UPGRADE_OR_DOWNGRADE"
    assert limit(client, "paid", "seats") == 5
    assert client.v1.customers.check_entitlement("paid", feature_id="sso").data.is_granted

    # Never paid: the settlement window cancels the pending one; Free stays, and is not provisioned again.
    free, pro = on_free(client, "unpaid"), pending_pro(client, "unpaid")
    cancellation.cancel_by_billing(server.db, env, pro, reason="PENDING_PAYMENT_EXPIRED")
    assert statuses(client, "unpaid") == {free: ("free", "ACTIVE"), pro: ("pro", "CANCELED")}
    assert limit(client, "unpaid", "seats") == 1

    # Cancelled through the API (the customer gave up): the same.
    free, pro = on_free(client, "gave-up"), pending_pro(client, "gave-up")
    client.v1.subscriptions.cancel(pro, cancellation_time="IMMEDIATE")
    assert statuses(client, "gave-up") == {free: ("free", "ACTIVE"), pro: ("pro", "CANCELED")}

    # Tried again: the first pending one is replaced by the second, which replaces Free once paid.
    free, first = on_free(client, "retry"), pending_pro(client, "retry")
    second = pending_pro(client, "retry")
    assert statuses(client, "retry") == {
        free: ("free", "ACTIVE"),
        first: ("pro", "CANCELED"),
        second: ("pro", "PAYMENT_PENDING"),
    }
    lifecycle.payment_succeeded(server.db, env, second)
    assert statuses(client, "retry") == {
        free: ("free", "CANCELED"),
        first: ("pro", "CANCELED"),
        second: ("pro", "ACTIVE"),
    }
