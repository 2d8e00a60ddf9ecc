"""Credit balances through the SDK: read once then answered locally, kept current by the push stream's
`credits.updated`, consumption with idempotency keys, reservations and their release."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from entitle.sdk import AsyncEntitle, Entitle, EntitleError, Source
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
