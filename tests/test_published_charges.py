"""A published plan version's charges are read once per process (`catalog.packages.published_charges`):
a second provisioning on the same version reads none, and a newly published version is read and obeyed
at once (its prices, not the previous version's)."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from entitle.db import Database
from entitle.environments.service import ensure_environment
from entitle.errors import InvalidArgument
from entitle.subscriptions import journey
from entitle.subscriptions.schemas import CustomerProvisionWithSubscription
from tests.conftest import LiveServer
from tests.support.statements import statements

_ids = itertools.count()


def _charges(period: str) -> dict[str, Any]:
    flat = [{"billingPeriod": period, "price": {"amount": 10, "currency": "usd"}}]
    return {"pricingType": "PAID", "pricingModels": [{"billingModel": "FLAT_FEE", "pricePeriods": flat}]}


def _publish(api: httpx.Client, plan: str, period: str, *, new_plan: bool) -> None:
    if new_plan:
        api.post("/api/v1/products", json={"id": f"{plan}-product", "displayName": plan}).raise_for_status()
        body = {"id": plan, "displayName": plan, "productId": f"{plan}-product"}
        api.post("/api/v1/plans", json=body).raise_for_status()
    else:
        api.post(f"/api/v1/plans/{plan}/draft").raise_for_status()
    api.patch(f"/api/v1/plans/{plan}", json={"charges": _charges(period)}).raise_for_status()
    api.post(f"/api/v1/plans/{plan}/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()


def _provision(db: Database, env_id: int, plan: str, period: str) -> list[str]:
    """The SQL statements of one provisioning reading package charges."""
    body = {"id": f"charged-{next(_ids)}", "subscriptionParams": {"planId": plan, "billingPeriod": period}}
    with statements(db, counted=lambda sql: sql.startswith("SELECT package_charges.")) as seen:
        journey.provision_customer(db, env_id, CustomerProvisionWithSubscription.model_validate(body))
    return seen


def test_a_published_versions_charges_are_read_once_and_a_new_version_is_obeyed_at_once(
    module_server: LiveServer,
) -> None:
    db = module_server.db
    env_id = ensure_environment(db, "development").pk
    plan = f"charged-plan-{next(_ids)}"
    with module_server.http() as api:
        _publish(api, plan, "MONTHLY", new_plan=True)
        assert len(_provision(db, env_id, plan, "MONTHLY")) == 1
        assert _provision(db, env_id, plan, "MONTHLY") == []
        with pytest.raises(InvalidArgument, match="no ANNUALLY price"):
            _provision(db, env_id, plan, "ANNUALLY")
        _publish(api, plan, "ANNUALLY", new_plan=False)
        assert len(_provision(db, env_id, plan, "ANNUALLY")) == 1
        assert _provision(db, env_id, plan, "ANNUALLY") == []
        with pytest.raises(InvalidArgument, match="no MONTHLY price"):
            _provision(db, env_id, plan, "MONTHLY")
