"""Credit balances through the SDK: read once then answered locally, kept current by the push stream's
`credits.updated`, consumption with idempotency keys, reservations and their release."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest

from entitle.sdk import AsyncEntitle, Entitle, EntitleError, Source
from entitle.sdk.cache import MemoryCache
from entitle.sdk.store import EntitlementStore
from tests.conftest import LiveServer
from tests.sdk.conftest import AsyncCountingTransport, CountingTransport
from tests.sdk.test_push import eventually, require_push
from tests.test_credit_priced_checks import PricedShop

CHECK = "/api/v1/customers/buyer/entitlements/check"


@pytest.fixture
def wallet(server: LiveServer, api: httpx.Client) -> LiveServer:
    """Customer `buyer` with 100 `tokens` credits."""
    api.post("/api/v1/customers", json={"id": "buyer"}).raise_for_status()
    api.post("/api/v1/credits/custom-currencies", json={"id": "tokens", "displayName": "Tokens"}).raise_for_status()
    grant(api, 100)
    return server


def grant(api: httpx.Client, amount: int) -> None:
    body = {
        "customerId": "buyer",
        "currencyId": "tokens",
        "amount": amount,
        "displayName": "Top-up",
        "grantType": "PAID",
    }
    api.post("/api/v1/credits/grants", json=body).raise_for_status()


def test_balances_are_cached_and_follow_the_stream(wallet: LiveServer) -> None:
    transport = CountingTransport()
    with Entitle(wallet.key(), wallet.base_url, transport=transport) as client:
        require_push(client)
        first = client.get_credit_balance("buyer", "tokens")
        assert (first.usage_limit, first.current_usage, first.balance, first.source) == (100, 0, 100, Source.SERVER)
        assert client.get_credit_balance("buyer", "tokens").source is Source.CACHE
        assert transport.paths[CHECK] == 1

        spent = client.consume("buyer", "tokens", Decimal("12.5"), idempotency_key="job-1", dimensions={"user": "u"})
        assert (spent.balance, spent.source) == (Decimal("87.5"), Source.SERVER)
        again = client.consume("buyer", "tokens", Decimal("12.5"), idempotency_key="job-1")
        assert again.balance == Decimal("87.5")  # the same key draws nothing twice
        with pytest.raises(EntitleError) as reused:
            client.consume("buyer", "tokens", 3, idempotency_key="job-1")
        assert reused.value.code == "IDEMPOTENCY_KEY_REUSED"
        assert client.get_credit_balance("buyer", "tokens").balance == Decimal("87.5")

        held = client.reserve("buyer", "tokens", 50, "res-1", ttl_seconds=600)
        assert (held.is_granted, held.reservation_id, held.amount, held.status) == (True, "res-1", 50, "ACTIVE")
        assert (held.balance.balance, held.balance.reserved) == (Decimal("37.5"), 50)
        refused = client.reserve("buyer", "tokens", 40, "res-2")
        assert (refused.is_granted, refused.access_denied_reason) == (False, "InsufficientCredits")
        released = client.release("res-1", "buyer", "tokens", 20)
        assert (released.status, released.consumed_amount) == ("RELEASED", 20)
        assert (released.balance.balance, released.balance.reserved) == (Decimal("67.5"), 0)
        assert client.release("res-1", "buyer", "tokens", 20).balance.balance == Decimal("67.5")  # idempotent

        with wallet.http() as api:  # someone else tops the customer up
            grant(api, 30)
        topped = eventually(lambda: client.get_credit_balance("buyer", "tokens"), lambda b: b.balance == 97.5)
        assert (topped.usage_limit, topped.balance, topped.source) == (130, Decimal("97.5"), Source.CACHE)
        assert transport.paths[CHECK] == 3  # the first read and the two reservations: nothing re-read


def test_an_unknown_currency_is_an_error_and_offline_answers_the_last_balance(wallet: LiveServer) -> None:
    client = Entitle(wallet.key(), wallet.base_url, push=False, cache_ttl=0.0)
    try:
        with pytest.raises(EntitleError) as unknown:
            client.get_credit_balance("buyer", "nope")
        assert unknown.value.status == 404
        assert client.get_credit_balance("buyer", "tokens").source is Source.SERVER
    finally:
        client.close()
    # The same cache with the server gone: the last known balance, marked stale.
    offline = Entitle(wallet.key(), "http://127.0.0.1:9", push=False, cache_ttl=0.0)
    offline._store.credits.hot.update(client._store.credits.hot)
    try:
        stale = offline.get_credit_balance("buyer", "tokens")
        assert (stale.balance, stale.source) == (100, Source.STALE_CACHE)
    finally:
        offline.close()


def test_async_client_credits(wallet: LiveServer) -> None:
    async def main() -> None:
        transport = AsyncCountingTransport()
        async with AsyncEntitle(wallet.key(), wallet.base_url, transport=transport, push=False) as client:
            first = await client.get_credit_balance("buyer", "tokens")
            assert (first.balance, first.source) == (100, Source.SERVER)
            assert (await client.get_credit_balance("buyer", "tokens")).source is Source.CACHE
            spent = await client.consume("buyer", "tokens", 40)
            assert spent.balance == 60
            held = await client.reserve("buyer", "tokens", 10, "a-res")
            assert held.is_granted and held.balance.balance == 50
            released = await client.release("a-res", "buyer", "tokens", 0)
            assert released.balance.balance == 60
            assert (await client.get_credit_balance("buyer", "tokens")).balance == 60
            assert transport.paths[CHECK] == 2

    asyncio.run(main())


# -- features priced in credits (docs/credits.md, "Credits in entitlement answers") ---------------------


def test_a_credit_priced_feature_is_asked_of_the_server_and_follows_the_balance_at_once(server: LiveServer) -> None:
    shop = PricedShop(server)  # 10 credits; the feature costs 2 a unit
    checks = f"/api/v1/customers/{shop.customer}/entitlements/check"
    transport = CountingTransport()
    with Entitle(server.key(), server.base_url, transport=transport, push=False) as client:
        listed = client.get_entitlements(shop.customer)  # the list's CREDIT entitlement is no feature
        assert [(r.feature_id, r.is_granted, r.source) for r in listed] == [(shop.feature, True, Source.SERVER)]

        def asked(usage: int) -> tuple[bool, str | None, Source]:
            result = client.get_entitlement(shop.customer, shop.feature, requested_usage=usage)
            return result.is_granted, result.access_denied_reason, result.source

        assert asked(5) == (True, None, Source.SERVER)
        assert asked(6) == (False, "InsufficientCredits", Source.SERVER)  # the list said granted: 6 cost 12
        shop.consume(4, "sdk")  # no stream here: the next answer follows anyway
        assert asked(3) == (True, None, Source.SERVER) and asked(4)[:2] == (False, "InsufficientCredits")
        assert transport.paths[checks] == 4

        # What is not priced in credits is still the cache's; a list with a priced feature is the server's.
        other = client.get_entitlement(shop.customer, "not-granted")
        assert (other.is_granted, other.source) == (False, Source.CACHE)
        lists = transport.paths[f"/api/v1/customers/{shop.customer}/entitlements"]
        assert [r.is_granted for r in client.get_entitlements(shop.customer)] == [True]
        assert transport.paths[f"/api/v1/customers/{shop.customer}/entitlements"] == lists + 1
        assert transport.paths[checks] == 4

    # The server unreachable: the last list's answer, marked stale.
    offline = Entitle(server.key(), "http://127.0.0.1:9", push=False)
    offline._store.hot.update(client._store.hot)
    try:
        stale = offline.get_entitlement(shop.customer, shop.feature, requested_usage=1)
        assert (stale.is_granted, stale.source) == (True, Source.STALE_CACHE)
    finally:
        offline.close()


def test_the_async_client_asks_the_server_for_a_credit_priced_feature(server: LiveServer) -> None:
    shop = PricedShop(server)

    async def main() -> None:
        transport = AsyncCountingTransport()
        async with AsyncEntitle(server.key(), server.base_url, transport=transport, push=False) as client:
            first = await client.get_entitlement(shop.customer, shop.feature, requested_usage=5)
            assert (first.is_granted, first.source) == (True, Source.SERVER)
            shop.consume(1, "async")
            refused = await client.get_entitlement(shop.customer, shop.feature, requested_usage=5)
            assert (refused.is_granted, refused.access_denied_reason) == (False, "InsufficientCredits")
            assert [r.feature_id for r in await client.get_entitlements(shop.customer)] == [shop.feature]
            assert transport.paths[f"/api/v1/customers/{shop.customer}/entitlements/check"] == 2

    asyncio.run(main())


# -- the list's balances fill the credit cache -------------------------------------------------------------


def test_the_list_fills_the_balances_and_answers_the_first_check_of_a_credit_priced_feature(
    module_server: LiveServer,
) -> None:
    shop = PricedShop(module_server)  # 10 credits; the feature costs 2 a unit
    entitlements = f"/api/v1/customers/{shop.customer}/entitlements"
    checks = f"{entitlements}/check"
    transport = CountingTransport()
    with Entitle(module_server.key(), module_server.base_url, transport=transport, push=False) as client:
        # Cold: the list the server sends answers the feature as its check would (one request, not two).
        first = client.get_entitlement(shop.customer, shop.feature)
        assert (first.is_granted, first.source) == (True, Source.SERVER)
        assert (transport.paths[entitlements], transport.paths[checks]) == (1, 0)
        # The list carried the balance: reading it asks nothing.
        balance = client.get_credit_balance(shop.customer, shop.currency)
        assert (balance.usage_limit, balance.current_usage, balance.source) == (10, 0, Source.CACHE)
        assert transport.total == 1

        # A credit-priced feature in a list already held is still the server's, every time.
        shop.consume(4, "listed")
        again = client.get_entitlement(shop.customer, shop.feature, requested_usage=4)
        assert (again.is_granted, again.access_denied_reason, again.source) == (
            False,
            "InsufficientCredits",
            Source.SERVER,
        )
        assert client.get_entitlement(shop.customer, shop.feature).source is Source.SERVER
        assert (transport.paths[entitlements], transport.paths[checks]) == (1, 2)

        # A list read again (here `refresh`) brings the balance as it now is.
        client.refresh(shop.customer)
        moved = client.get_credit_balance(shop.customer, shop.currency)
        assert (moved.balance, moved.source) == (6, Source.CACHE)
        assert transport.paths[checks] == 2

    # Cold with a usage asked: the list does not price it, so the check is asked too.
    cold = CountingTransport()
    with Entitle(module_server.key(), module_server.base_url, transport=cold, push=False) as client:
        asked = client.get_entitlement(shop.customer, shop.feature, requested_usage=3)
        assert (asked.is_granted, asked.source) == (True, Source.SERVER)
        assert (cold.paths[entitlements], cold.paths[checks]) == (1, 1)


def test_the_async_client_fills_the_balances_from_the_list(module_server: LiveServer) -> None:
    shop = PricedShop(module_server)
    entitlements = f"/api/v1/customers/{shop.customer}/entitlements"
    checks = f"{entitlements}/check"

    async def main() -> None:
        transport = AsyncCountingTransport()
        async with AsyncEntitle(module_server.key(), module_server.base_url, transport=transport, push=False) as client:
            first = await client.get_entitlement(shop.customer, shop.feature)
            assert (first.is_granted, first.source) == (True, Source.SERVER)
            balance = await client.get_credit_balance(shop.customer, shop.currency)
            assert (balance.balance, balance.source) == (10, Source.CACHE)
            assert (transport.paths[entitlements], transport.total) == (1, 1)

            shop.consume(4, "async-listed")
            again = await client.get_entitlement(shop.customer, shop.feature, requested_usage=4)
            assert (again.is_granted, again.source) == (False, Source.SERVER)
            await client.refresh(shop.customer)
            assert (await client.get_credit_balance(shop.customer, shop.currency)).balance == 6
            assert (transport.paths[entitlements], transport.paths[checks]) == (2, 1)

            cold = AsyncCountingTransport()
            async with AsyncEntitle(module_server.key(), module_server.base_url, transport=cold, push=False) as other:
                asked = await other.get_entitlement(shop.customer, shop.feature, requested_usage=1)
                assert (asked.is_granted, asked.source) == (True, Source.SERVER)
                assert (cold.paths[entitlements], cold.paths[checks]) == (1, 1)

    asyncio.run(main())


def _listed(balance: int) -> dict[str, Any]:
    credit = {"type": "CREDIT", "currency": {"currencyId": "gems"}, "usageLimit": balance, "currentUsage": 0}
    return {"entitlements": [credit], "creditPricedFeatures": []}


def test_a_balance_pushed_while_the_list_was_in_flight_is_not_overwritten_by_it() -> None:
    store = EntitlementStore(MemoryCache(), "t:", ttl=30.0)
    key = ("cust", "gems", None)
    mark = store.before_fetch(("cust", None))
    store.credits.store(key, {"usageLimit": 7, "currentUsage": 0})  # pushed after the list was asked for
    store.store(("cust", None), _listed(50), mark)
    assert store.credits.hot[key].usage_limit == 7
    # A list asked for after the push keeps what it says.
    store.store(("cust", None), _listed(50), store.before_fetch(("cust", None)))
    assert store.credits.hot[key].usage_limit == 50
    # Another currency the list carries is kept either way; an entry without its numbers is not.
    other = _listed(3)
    other["entitlements"] += [{"type": "CREDIT", "currency": {"currencyId": "ore"}}]
    other["entitlements"][0]["currency"]["currencyId"] = "coal"
    store.store(("cust", None), other, mark)
    assert store.credits.hot[("cust", "coal", None)].usage_limit == 3
    assert ("cust", "ore", None) not in store.credits.hot


def _priced_list(granted: bool) -> dict[str, Any]:
    feature = {
        "type": "FEATURE",
        "feature": {"id": "priced", "featureType": "NUMBER"},
        "isGranted": granted,
        "accessDeniedReason": None if granted else "InsufficientCredits",
        "hasUnlimitedUsage": True,
    }
    return {"entitlements": [feature], "creditPricedFeatures": ["priced"]}


def _changing_server(client: list[Any]) -> Any:
    """A server whose list reads find a change announced while they are in flight; its check answers denied."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/check"):
            return httpx.Response(200, json={"data": _priced_list(False)["entitlements"][0]})
        client[0]._store.invalidate("cust", None)  # the push stream announces a change meanwhile
        return httpx.Response(200, json={"data": _priced_list(True)})

    return answer


def test_a_list_that_may_predate_a_change_does_not_answer_a_credit_priced_feature() -> None:
    holder: list[Any] = []
    transport = httpx.MockTransport(_changing_server(holder))
    with Entitle("key", "http://entitle.test", transport=transport, push=False) as client:
        holder.append(client)
        result = client.get_entitlement("cust", "priced")
        assert (result.is_granted, result.access_denied_reason, result.source) == (
            False,
            "InsufficientCredits",
            Source.SERVER,
        )


def test_the_async_client_asks_the_check_when_the_list_may_predate_a_change() -> None:
    async def main() -> None:
        holder: list[Any] = []
        transport = httpx.MockTransport(_changing_server(holder))
        async with AsyncEntitle("key", "http://entitle.test", transport=transport, push=False) as client:
            holder.append(client)
            result = await client.get_entitlement("cust", "priced")
            assert (result.is_granted, result.source) == (False, Source.SERVER)

    asyncio.run(main())
