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
