from __future__ import annotations

from collections.abc import Iterator

import pytest
import stigg
from sqlalchemy.orm import Session

from entitle.environments.service import ensure_environment
from entitle.errors import FailedPrecondition
from entitle.subscriptions import lifecycle
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


def test_paid_subscriptions_wait_for_payment_when_a_provider_says_so(
    server: LiveServer, client: stigg.Stigg, gated: None
) -> None:
    build_catalog(client)
    client.v1.customers.provision(id="c")
    sub = client.v1.subscriptions.provision(customer_id="c", plan_id="pro").data.subscription
    assert sub is not None and (sub.status, sub.payment_collection) == ("PAYMENT_PENDING", "PROCESSING")
    assert not client.v1.customers.check_entitlement("c", feature_id="sso").data.is_granted

    env = ensure_environment(server.db, "development").pk
    failed = lifecycle.payment_failed(server.db, env, sub.id)
    assert (failed.sub.status, failed.sub.payment_collection) == ("PAYMENT_PENDING", "FAILED")
    assert not client.v1.customers.check_entitlement("c", feature_id="sso").data.is_granted

    paid = lifecycle.payment_succeeded(server.db, env, sub.id)
    assert (paid.sub.status, paid.sub.payment_collection) == ("ACTIVE", "NOT_REQUIRED")
    assert client.v1.customers.check_entitlement("c", feature_id="sso").data.is_granted

    free = client.v1.subscriptions.provision(customer_id="c", plan_id="free", schedule_strategy="IMMEDIATE")
    assert free.data.subscription is not None and free.data.subscription.status == "ACTIVE"  # free never waits

    with pytest.raises(FailedPrecondition):
        lifecycle.payment_succeeded(server.db, env, sub.id)  # canceled by the downgrade: a late payment changes nothing
