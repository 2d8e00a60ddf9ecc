"""The credit rates of a customer's features (`credits.pricing.rates` / `rates_of`: usage charging,
estimates, credit-priced checks) are read at a fixed number of queries however many live subscriptions
and add-ons the customer has, on SQLite and PostgreSQL, and answer as each subscription's prices say: the
first subscription's price of a currency wins, an add-on's price counts, a deal's own rate replaces the
list's, another billing period's price does not count."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.catalog.packages.models import PackageCharge
from entitle.credits import pricing
from entitle.customers import store as customers
from entitle.environments.service import environment_pk
from tests.conftest import LiveServer
from tests.support.statements import statements

_ids = itertools.count()


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _credit_price(feature: str, currency: str, amount: float, period: str = "MONTHLY") -> dict[str, Any]:
    return {
        "billingModel": "CREDIT_BASED",
        "featureId": feature,
        "pricePeriods": [{"billingPeriod": period, "creditRate": {"amount": amount, "currencyId": currency}}],
    }


def _package(api: httpx.Client, kind: str, ref: str, product: str, *prices: dict[str, Any], **extra: Any) -> None:
    _ok(api.post(f"/api/v1/{kind}", json={"id": ref, "displayName": ref, "productId": product}))
    flat = {
        "billingModel": "FLAT_FEE",
        "pricePeriods": [
            {"billingPeriod": "MONTHLY", "price": {"amount": 5, "currency": "usd"}},
            {"billingPeriod": "ANNUALLY", "price": {"amount": 50, "currency": "usd"}},
        ],
    }
    charges = {"pricingType": "PAID", "pricingModels": [flat, *prices]}
    _ok(api.patch(f"/api/v1/{kind}/{ref}", json={"charges": charges, **extra}))
    _ok(api.post(f"/api/v1/{kind}/{ref}/publish", json={"migrationType": "NEW_CUSTOMERS"}))


def _rates(server: LiveServer, customer_ref: str, features: list[str]) -> tuple[dict[str, list[Any]], int]:
    """The rates of `features`, and how many statements reading them took (in a fresh transaction)."""
    env = environment_pk(server.db, "development")
    with server.db.read() as s:
        customer = customers.find(s, env, customer_ref)
        assert customer is not None
        with statements(server.db, counted=lambda sql: sql not in ("BEGIN", "COMMIT", "ROLLBACK")) as seen:
            found = pricing.rates_of(s, env, customer, None, features)
        return {ref: [(r.currency_ref, r.per_unit) for r in rates] for ref, rates in found.items()}, len(seen)


def test_rates_take_the_same_few_queries_however_many_subscriptions(module_server: LiveServer) -> None:
    n = next(_ids)
    calls, tokens, plain = f"rcalls{n}", f"rtokens{n}", f"rplain{n}"
    gold, silver = f"gold{n}", f"silver{n}"
    with module_server.http() as api:
        for currency in (gold, silver):
            _ok(api.post("/api/v1/credits/custom-currencies", json={"id": currency, "displayName": currency}))
        for feature in (calls, tokens, plain):
            body = {"id": feature, "displayName": feature, "featureType": "NUMBER", "meterType": "INCREMENTAL"}
            _ok(api.post("/api/v1/features", json=body))
        products = [f"rp{n}-{i}" for i in range(4)]
        for product in products:
            _ok(api.post("/api/v1/products", json={"id": product, "displayName": product}))
        booster = f"boost{n}"
        _package(api, "addons", booster, products[2], _credit_price(tokens, silver, 0.25))
        # Subscription 0 prices calls in gold at 2 (annually: 20, which a monthly subscription does not pay);
        # 1 in gold at 3 (the first price of gold wins) and in silver, with a deal of 7; 2 buys the add-on
        # pricing tokens; 3 prices nothing of ours.
        _package(
            api,
            "plans",
            f"rplan{n}-0",
            products[0],
            _credit_price(calls, gold, 2),
            _credit_price(calls, gold, 20, "ANNUALLY"),
        )
        _package(
            api, "plans", f"rplan{n}-1", products[1], _credit_price(calls, gold, 3), _credit_price(tokens, silver, 1)
        )
        _package(
            api, "plans", f"rplan{n}-2", products[2], _credit_price(calls, silver, 4), compatibleAddonIds=[booster]
        )
        _package(api, "plans", f"rplan{n}-3", products[3])
        subscribed = {
            0: {},
            1: {"priceOverrides": [{"featureId": tokens, "creditRate": {"amount": 7, "currencyId": silver}}]},
            2: {"addons": [{"id": booster, "quantity": 1}]},
            3: {},
        }
        lone, many = f"lone{n}", f"many{n}"
        for customer in (lone, many):
            _ok(api.post("/api/v1/customers", json={"id": customer}))
        _ok(
            api.post(
                "/api/v1/subscriptions", json={"customerId": lone, "planId": f"rplan{n}-0", "billingPeriod": "MONTHLY"}
            )
        )
        for i, extra in subscribed.items():
            body = {"customerId": many, "planId": f"rplan{n}-{i}", "billingPeriod": "MONTHLY", **extra}
            _ok(api.post("/api/v1/subscriptions", json=body))

    features = [calls, tokens, plain]
    one, one_read = _rates(module_server, lone, features)
    assert one == {calls: [(gold, Decimal(2))]}
    four, four_read = _rates(module_server, many, features)
    assert four == {
        calls: [(gold, Decimal(2)), (silver, Decimal(4))],
        tokens: [(silver, Decimal(7))],
    }
    # The environment's credit-priced features, the live subscriptions, their add-ons, their prices.
    assert one_read == four_read <= 4
    # One feature at a time answers the same (the usage path asks so).
    for ref in features:
        assert [(r.currency_ref, r.per_unit) for r in _one(module_server, many, ref)] == four.get(ref, [])


def _one(server: LiveServer, customer_ref: str, feature: str) -> list[pricing.Rate]:
    env = environment_pk(server.db, "development")
    with server.db.read() as s:
        customer = customers.find(s, env, customer_ref)
        assert customer is not None
        return pricing.rates(s, env, customer, None, feature)


def test_an_event_estimate_prices_every_metered_feature_it_moves_at_one_reading_of_the_rates(
    module_server: LiveServer,
) -> None:
    n = next(_ids)
    gold, event = f"egold{n}", f"ev{n}"
    counted, summed, peak, unpriced = (f"e{kind}{n}" for kind in ("count", "sum", "max", "free"))
    with module_server.http() as api:
        _ok(api.post("/api/v1/credits/custom-currencies", json={"id": gold, "displayName": gold}))
        only_this_event = [{"conditions": [{"field": "eventName", "operation": "EQUALS", "value": event}]}]
        for feature, function in ((counted, "COUNT"), (summed, "SUM"), (peak, "MAX"), (unpriced, "SUM")):
            aggregation = {"function": function} if function == "COUNT" else {"function": function, "field": "tokens"}
            body = {
                "id": feature,
                "displayName": feature,
                "featureType": "NUMBER",
                "meterType": "INCREMENTAL",
                "meter": {"aggregation": aggregation, "filters": only_this_event},
            }
            _ok(api.post("/api/v1/features", json=body))
        product, plan, customer = f"ep{n}", f"eplan{n}", f"ecust{n}"
        _ok(api.post("/api/v1/products", json={"id": product, "displayName": product}))
        prices = [_credit_price(peak, gold, 1), _credit_price(summed, gold, 0.5), _credit_price(counted, gold, 2)]
        _package(api, "plans", plan, product, *prices)
        _ok(api.post("/api/v1/customers", json={"id": customer}))
        _ok(
            api.post("/api/v1/subscriptions", json={"customerId": customer, "planId": plan, "billingPeriod": "MONTHLY"})
        )
        estimate = {"customerId": customer, "eventName": event, "dimensions": {"tokens": 40}}
        answer = _ok(api.post("/api/v1/events/estimate", json=estimate))

    (priced,) = answer["estimates"]
    assert (priced["currencyId"], priced["estimatedCost"], answer["warnings"]) == (gold, 22, [])
    # In feature order, whatever the order of the prices; what one event adds to a MAX is not known.
    assert [(b["featureId"], b["cost"], b.get("warningCode")) for b in priced["breakdown"]] == [
        (counted, 2, None),
        (peak, 0, "UNSUPPORTED_AGGREGATION"),
        (summed, 20, None),
    ]


class _Undone(Exception):
    """Raised to roll a test's transaction back."""


def test_the_credit_priced_features_see_what_the_transaction_changed_before_asking(
    module_server: LiveServer,
) -> None:
    # The features are read on the session's connection (not through the ORM's execution): a charge the
    # transaction changed but did not flush yet is flushed first, as the ORM's autoflush did.
    n = next(_ids)
    gold, priced, product = f"fgold{n}", f"fpriced{n}", f"fp{n}"
    with module_server.http() as api:
        _ok(api.post("/api/v1/credits/custom-currencies", json={"id": gold, "displayName": gold}))
        body = {"id": priced, "displayName": priced, "featureType": "NUMBER", "meterType": "INCREMENTAL"}
        _ok(api.post("/api/v1/features", json=body))
        _ok(api.post("/api/v1/products", json={"id": product, "displayName": product}))
        _package(api, "plans", f"fplan{n}", product, _credit_price(priced, gold, 2))
    env = environment_pk(module_server.db, "development")
    with module_server.db.read() as s:
        assert priced in pricing.priced_features(s, env)
    with pytest.raises(_Undone), module_server.db.transaction() as s:
        charges = s.scalars(select(PackageCharge).where(PackageCharge.feature_ref == priced)).all()
        assert charges
        for charge in charges:
            charge.credit_rate_amount = None  # no longer priced in credits (not flushed yet)
        assert priced not in pricing.priced_features(s, env)
        raise _Undone
    with module_server.db.read() as s:
        assert priced in pricing.priced_features(s, env)
