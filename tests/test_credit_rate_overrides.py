"""Credit-rate price overrides of a sales-led deal (issue 17), on SQLite and PostgreSQL: a subscription's
`priceOverrides` entry `{featureId, creditRate}` sets how many credits one unit of a credit-priced feature
costs that subscription. Reported usage, metered events and estimates draw at the deal's rate; the
subscription's `prices` show it; a rate the subscription cannot have is refused and writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitle.credits import rules
from entitle.subscriptions import price_rules
from entitle.subscriptions.schemas import PriceOverride
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.test_credits_recurring import START, Shop, _priced_plan


@pytest.fixture
def shop(module_server: LiveServer, test_clock: TestClock) -> Iterator[Shop]:
    test_clock.set(START)
    yield Shop(module_server, test_clock)


def _rate(feature: str, amount: float, currency: str) -> dict[str, Any]:
    return {"featureId": feature, "creditRate": {"amount": amount, "currencyId": currency}}


def test_a_deals_credit_rate_prices_usage_events_and_estimates(shop: Shop, module_server: LiveServer) -> None:
    calls, tokens = _priced_plan(shop, 0.5)
    api = module_server.http()
    deal = [_rate(calls, 2, shop.currency), _rate(tokens, 0.125, shop.currency)]
    sub_id = f"deal{shop.n}"
    body = {"customerId": shop.customer, "planId": shop.plan, "id": sub_id, "billingPeriod": "MONTHLY"}

    # The preview checks the rates as provisioning will (they change no money line).
    asked = {"customerId": shop.customer, "planId": shop.plan, "billingPeriod": "MONTHLY", "priceOverrides": deal}
    preview = api.post("/api/v1/subscriptions/preview", json=asked)
    assert preview.status_code == 200, preview.text
    assert preview.json()["data"]["recurringInvoice"]["total"] == 10

    made = api.post("/api/v1/subscriptions", json=body | {"priceOverrides": deal})
    assert made.status_code == 200, made.text
    prices = made.json()["data"]["subscription"]["prices"]
    assert [(p["featureId"], p["creditRate"], p.get("amount")) for p in prices] == [
        (calls, {"amount": 2, "currencyId": shop.currency}, None),
        (tokens, {"amount": 0.125, "currencyId": shop.currency}, None),
    ]
    assert api.get(f"/api/v1/subscriptions/{sub_id}").json()["data"]["prices"] == prices
    # The official client reads them (a field its model does not name is kept as an extra).
    (first, _) = shop.client.v1.subscriptions.retrieve(sub_id).data.prices or []
    assert (first.feature_id, first.to_dict()["creditRate"]) == (calls, {"amount": 2, "currencyId": shop.currency})

    # Reported usage draws 2 credits a call, not the list's 0.5.
    report = {"customer_id": shop.customer, "feature_id": calls, "value": 3, "idempotency_key": f"{shop.n}-u"}
    (usage,) = shop.client.v2.usage.report(usages=[report]).data.usages
    assert usage.credit is not None and usage.credit.consumed == 6
    # Metered events draw 0.125 credits a token.
    event = {
        "customer_id": shop.customer,
        "event_name": f"llm{shop.n}",
        "idempotency_key": f"{shop.n}-e",
        "dimensions": {"tokens": 40},
    }
    shop.client.v1.events.report(events=[event])  # type: ignore[list-item]
    assert shop.balance() == 100 - 6 - 5
    assert shop.ledger_sum() == shop.balance()
    # Estimates quote the deal's rate.
    (estimate,) = shop.client.v1.usage.estimate(customer_id=shop.customer, feature_id=calls, value=7).data.estimates
    assert estimate.estimated_cost == 14
    (by_event,) = shop.client.v1.events.estimate(
        customer_id=shop.customer, event_name=f"llm{shop.n}", dimensions={"tokens": 80}
    ).data.estimates
    assert by_event.estimated_cost == 10

    # An update that leaves the rate out goes back to the list's rate.
    updated = api.patch(f"/api/v1/subscriptions/{sub_id}", json={"priceOverrides": [deal[1]]})
    assert updated.status_code == 200, updated.text
    again = {**report, "idempotency_key": f"{shop.n}-u2"}
    (usage,) = shop.client.v2.usage.report(usages=[again]).data.usages
    assert usage.credit is not None and usage.credit.consumed == 1.5


REFUSED: list[tuple[Any, str]] = [  # one override, or a list of them
    ({"featureId": "{calls}", "creditRate": {"amount": 1, "currencyId": "other"}}, "not in 'other'"),
    ({"featureId": "nope", "creditRate": {"amount": 1, "currencyId": "{cur}"}}, "in no credits"),
    ({"featureId": "{calls}", "amount": 1, "creditRate": {"amount": 1, "currencyId": "{cur}"}}, "not an amount"),
    ({"addonId": "x", "creditRate": {"amount": 1, "currencyId": "{cur}"}}, "featureId"),
    ({"featureId": "{calls}", "creditRate": {"amount": 0, "currencyId": "{cur}"}}, "greater than 0"),
    ({"featureId": "{calls}"}, "gives its amount"),
    ({"featureId": "{calls}", "creditRate": {"amount": 1, "currencyId": "{cur}", "costFormula": "x"}}, "UNSUPPORTED"),
    ({"currencyId": "{cur}", "baseCharge": True, "amount": 1}, "UNSUPPORTED_FIELD"),
    ([{"featureId": "{calls}", "creditRate": {"amount": 1, "currencyId": "{cur}"}}] * 2, "overridden twice"),
]


def test_a_credit_rate_the_subscription_cannot_have_is_refused_and_nothing_is_written(
    shop: Shop, module_server: LiveServer
) -> None:
    calls, _ = _priced_plan(shop, 0.5)
    api: httpx.Client = module_server.http()
    sub_id = f"bad{shop.n}"
    kept = [_rate(calls, 3, shop.currency)]
    for override, says in REFUSED:
        wanted = _fill(override if isinstance(override, list) else [override], calls=calls, cur=shop.currency)
        body = {"customerId": shop.customer, "planId": shop.plan, "id": sub_id, "priceOverrides": wanted}
        resp = api.post("/api/v1/subscriptions", json=body)
        assert resp.status_code == 400 and says in resp.text, resp.text
        assert api.get(f"/api/v1/subscriptions/{sub_id}").status_code == 404
    made = api.post("/api/v1/subscriptions", json=body | {"priceOverrides": kept})
    assert made.status_code == 200, made.text
    for override, says in REFUSED:  # an update is checked alike and keeps the rate it had
        wanted = _fill(override if isinstance(override, list) else [override], calls=calls, cur=shop.currency)
        resp = api.patch(f"/api/v1/subscriptions/{sub_id}", json={"priceOverrides": wanted})
        assert resp.status_code == 400 and says in resp.text, resp.text
    prices = api.get(f"/api/v1/subscriptions/{sub_id}").json()["data"]["prices"]
    assert [(p["featureId"], p["creditRate"]) for p in prices] == [(calls, {"amount": 3, "currencyId": shop.currency})]


def _fill(value: Any, **names: str) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, **names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, **names) for v in value]
    return value.format(**names) if isinstance(value, str) else value


@given(
    deal_rate=st.decimals(min_value="0.000001", max_value=10**6, places=6),
    units=st.decimals(min_value=0, max_value=10**6, places=3),
)
def test_a_kept_credit_rate_reads_back_exactly(deal_rate: Decimal, units: Decimal) -> None:
    """Kept in wire form, read back as the same rate (an update re-checks the kept overrides from that form),
    and never taken for a money price."""
    override = PriceOverride.model_validate(
        _rate("calls", 1, "ai") | {"creditRate": {"amount": deal_rate, "currencyId": "ai"}}
    )
    stored = price_rules.check([override], [], {}, "MONTHLY", {"calls": {"ai"}})
    assert price_rules.amounts(stored) == {}
    assert price_rules.credit_rates(stored) == {"calls": ("ai", deal_rate)}
    assert stored is not None
    reread = [PriceOverride.model_validate(entry) for entry in stored]
    assert price_rules.check(reread, [], {}, "MONTHLY", {"calls": {"ai"}}) == stored
    assert rules.credits_for(units, price_rules.credit_rates(stored)["calls"][1]) == rules.credits_for(units, deal_rate)
