"""What reading a customer's credits costs, on SQLite and PostgreSQL: the soft-limited currencies (those whose
CREDIT entitlement has `hasSoftLimit`: their checks are granted beyond the balance) are read once per load of
the customer, however many currencies its features are priced in, and once per reload of its credits (after
a movement dropped them); the rest grows only by what each wallet's balance takes."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import httpx

from entitle.clock import utcnow
from entitle.entitlements import service
from entitle.entitlements.service import Held
from entitle.entitlements.snapshot import Snapshot
from entitle.environments.service import environment_pk
from tests.conftest import LiveServer
from tests.support.statements import statements

_ids = itertools.count()


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _customer_priced_in(api: httpx.Client, currencies: dict[str, bool]) -> str:
    """A customer on a plan granting 10 of each currency a month (soft-limited where True), with one
    feature priced at a credit a unit in each; a second customer on the plan (its id + "-deal") whose
    subscription overrides the first currency's entitlement with a soft limit."""
    n = next(_ids)
    product, plan, customer = f"soft-app{n}", f"soft-plan{n}", f"soft-c{n}"
    _ok(api.post("/api/v1/products", json={"id": product, "displayName": "App"}))
    _ok(api.post("/api/v1/plans", json={"id": plan, "displayName": "Plan", "productId": product}))
    entitlements: list[dict[str, Any]] = []
    fee = {"billingPeriod": "MONTHLY", "price": {"amount": 5, "currency": "usd"}}
    prices: list[dict[str, Any]] = [{"billingModel": "FLAT_FEE", "pricePeriods": [fee]}]
    for currency, soft in currencies.items():
        feature = f"{currency}-calls"
        _ok(api.post("/api/v1/credits/custom-currencies", json={"id": currency, "displayName": currency}))
        feature_body = {"id": feature, "displayName": feature, "featureType": "NUMBER", "meterType": "INCREMENTAL"}
        _ok(api.post("/api/v1/features", json=feature_body))
        entitlements.append({"type": "CREDIT", "id": currency, "amount": 10, "cadence": "MONTH", "hasSoftLimit": soft})
        entitlements.append({"type": "FEATURE", "id": feature, "hasUnlimitedUsage": True})
        rate = {"billingPeriod": "MONTHLY", "creditRate": {"amount": 1, "currencyId": currency}}
        prices.append({"billingModel": "CREDIT_BASED", "featureId": feature, "pricePeriods": [rate]})
    _ok(api.post(f"/api/v1/plans/{plan}/entitlements", json={"entitlements": entitlements}))
    _ok(api.patch(f"/api/v1/plans/{plan}", json={"charges": {"pricingType": "PAID", "pricingModels": prices}}))
    _ok(api.post(f"/api/v1/plans/{plan}/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    for who, extra in (
        (customer, {}),
        (f"{customer}-deal", {"entitlements": [_soft_override(next(iter(currencies)))]}),
    ):
        _ok(api.post("/api/v1/customers", json={"id": who}))
        body = {"customerId": who, "planId": plan, "billingPeriod": "MONTHLY", **extra}
        _ok(api.post("/api/v1/subscriptions", json=body))
    return customer


def _soft_override(currency: str) -> dict[str, Any]:
    return {"type": "CREDIT", "id": currency, "amount": 10, "cadence": "MONTH", "hasSoftLimit": True}


def _counted(statement: str) -> bool:
    return statement not in ("BEGIN", "COMMIT", "ROLLBACK")


def _load(server: LiveServer, snapshot: Snapshot, customer: str, now: datetime) -> tuple[Held, list[str]]:
    env = environment_pk(server.db, "development")
    with statements(server.db, counted=_counted) as seen:
        held = service._load(server.db, snapshot, env, customer, None, None, now, want_credits=True)
    assert held is not None and held.credits is not None
    return held, seen


def _loads(server: LiveServer, customer: str) -> tuple[Held, list[str], Held, list[str]]:
    """The customer loaded whole, then its credits read again (dropped as a movement drops them)."""
    snapshot = Snapshot()
    snapshot.caught_up()
    now = utcnow()
    full, full_statements = _load(server, snapshot, customer, now)
    snapshot.drop_credits(environment_pk(server.db, "development"), customer)
    again, reload_statements = _load(server, snapshot, customer, now)
    assert again.view is full.view  # the view held: only the credits were read
    return full, full_statements, again, reload_statements


def _reads_overrides(seen: list[str]) -> int:
    """The reads of subscriptions' own entitlements: one per resolution of what the subscriptions grant (the
    question whether a soft limit could apply asks about them too, within an EXISTS: not counted)."""
    return sum(1 for statement in seen if "FROM subscription_entitlements" in statement and "EXISTS" not in statement)


def test_soft_limits_are_resolved_only_where_one_could_apply(module_server: LiveServer) -> None:
    """Before any soft-limited CREDIT entitlement exists in the environment's catalog, a customer's soft
    limits cost no resolution of its subscriptions' entitlements; one on another customer's subscription
    changes nothing for it, and counts for that customer."""
    hard = f"hard{next(_ids)}"
    with module_server.http() as api:
        one = _customer_priced_in(api, {hard: False})
    full, full_statements, again, reload_statements = _loads(module_server, one)
    assert full.credits is not None and again.credits is not None
    assert full.credits.soft == again.credits.soft == frozenset()
    assert [_reads_overrides(s) for s in (full_statements, reload_statements)] == [1, 0]  # the view's grants
    deal, _, deal_again, deal_reload_statements = _loads(module_server, f"{one}-deal")
    assert deal.credits is not None and deal_again.credits is not None
    assert deal.credits.soft == deal_again.credits.soft == frozenset({hard})
    assert [(r.currency_ref, r.soft_limit) for r in deal.view.credit_rates[f"{hard}-calls"]] == [(hard, True)]
    assert _reads_overrides(deal_reload_statements) == 1
    assert len(deal_reload_statements) == len(reload_statements) + 5  # the subscriptions' entitlements resolved


def test_soft_limits_are_read_once_per_load_however_many_currencies(module_server: LiveServer) -> None:
    with module_server.http() as api:
        one = _customer_priced_in(api, {f"hard{next(_ids)}": False})
        hard, soft = f"hard{next(_ids)}", f"soft{next(_ids)}"
        two = _customer_priced_in(api, {hard: False, soft: True})
    one_full, one_full_statements, _, one_reload_statements = _loads(module_server, one)
    full, full_statements, again, reload_statements = _loads(module_server, two)

    assert full.credits is not None and again.credits is not None
    assert full.credits.soft == again.credits.soft == frozenset({soft})
    assert {ref: [(r.currency_ref, r.soft_limit) for r in rates] for ref, rates in full.view.credit_rates.items()} == {
        f"{hard}-calls": [(hard, False)],
        f"{soft}-calls": [(soft, True)],
    }
    # The catalog now has a soft-limited CREDIT entitlement: the soft limits are resolved, once per load
    # (after the view's grants), whatever the currencies, and once per reload.
    assert [_reads_overrides(s) for s in (one_full_statements, full_statements)] == [2, 2]
    assert [_reads_overrides(s) for s in (one_reload_statements, reload_statements)] == [1, 1]
    # A second priced currency costs a full load its existence and its wallet's grants and holds; a reload,
    # the wallet's grants and holds.
    assert len(full_statements) - len(one_full_statements) == 3, (full_statements, one_full_statements)
    assert len(reload_statements) - len(one_reload_statements) == 2, (reload_statements, one_reload_statements)
    assert one_full.credits is not None and one_full.credits.soft == frozenset()
