"""Credits in entitlement answers, on SQLite and PostgreSQL (docs/credits.md, "Credits in entitlement
answers"): the list answers a credit-priced feature exactly as its check does and lists the customer's
CREDIT entitlements as the currency check answers them; the currency check is answered from the process's
snapshot, reads nothing once warm, and follows every change of the wallet, of time and of the currency, in
this process at once (in another within the push latency: tests/test_credit_priced_checks.py's
`test_another_process_follows_the_balance`)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx

from entitle.credits import service as credits
from entitle.credits.checks import CurrencyView, Standing, WalletState
from entitle.credits.engine import Balance
from entitle.credits.events import CurrencyChanged
from entitle.credits.schemas import CreditCheckRequest
from entitle.entitlements.snapshot import Snapshot
from entitle.environments.service import environment_pk
from entitle.push.feed import SnapshotFeed
from entitle.push.models import KIND_CURRENCIES
from entitle.push.schemas import Item
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.test_credit_priced_checks import NOW, START, PricedShop, _view
from tests.test_entitlement_snapshot import statements

PATIENCE = 30.0
"""How long another process may take to follow (far above the push latency): waited for, never timed."""


def _path(shop: PricedShop) -> str:
    return f"/api/v1/customers/{shop.customer}/entitlements"


def _data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def currency_check(api: httpx.Client, shop: PricedShop, **params: Any) -> dict[str, Any]:
    answer: dict[str, Any] = _data(api.get(f"{_path(shop)}/check", params={"currencyId": shop.currency, **params}))
    return answer


def read_afresh(server: LiveServer, shop: PricedShop, requested: int | None = None) -> dict[str, Any]:
    """The currency check read from the database, bypassing every snapshot."""
    env = environment_pk(server.db, "development")
    answer = credits.check(server.db, env, shop.customer, shop.currency, CreditCheckRequest(requested_usage=requested))
    fresh: dict[str, Any] = answer.model_dump(mode="json", by_alias=True)
    return fresh


def from_memory(
    server: LiveServer, api: httpx.Client, shop: PricedShop, requested: int | None = None
) -> dict[str, Any]:
    """The currency check once it reads nothing (the change just made was heard at its commit, so the
    first answer after it reads the database once, and the next is memory's); it must answer what a read
    from the database answers."""
    params = {} if requested is None else {"requestedUsage": requested}
    for _ in range(200):
        with statements(server.db) as seen:
            answer = currency_check(api, shop, **params)
        if not seen:
            assert answer == read_afresh(server, shop, requested)
            return answer
    raise AssertionError("the currency check never came from memory")


def balance_of(answer: dict[str, Any]) -> tuple[bool, str | None, Decimal]:
    return (
        answer["isGranted"],
        answer["accessDeniedReason"],
        Decimal(str(answer["usageLimit"] - answer["currentUsage"])),
    )


def test_the_list_answers_a_credit_priced_feature_as_its_check_and_lists_the_balance(
    module_server: LiveServer,
) -> None:
    shop = PricedShop(module_server)  # 10 credits; the feature costs 2 a unit
    with module_server.http() as api:

        def listed() -> tuple[bool, str | None, Decimal]:
            data = _data(api.get(_path(shop)))
            check = _data(api.get(f"{_path(shop)}/check", params={"featureId": shop.feature}))
            (feature,) = [e for e in data["entitlements"] if e["type"] == "FEATURE"]
            (credit,) = [e for e in data["entitlements"] if e["type"] == "CREDIT"]
            assert feature == check  # the same fields, the same answer
            assert credit == currency_check(api, shop)
            assert data["entitlements"] == [feature, credit]  # features first, then balances
            assert data["creditPricedFeatures"] == [shop.feature]
            assert credit["isGranted"] == (credit["usageLimit"] > credit["currentUsage"])
            return feature["isGranted"], feature["accessDeniedReason"], balance_of(credit)[2]

        assert listed() == (True, None, 10)
        shop.consume(10, "all")
        assert listed() == (False, "InsufficientCredits", 0)
        shop.promo(1)  # less than one unit costs, but a positive balance: the check without a usage grants
        assert listed() == (True, None, 1)

    # The official client reads the list with its CREDIT entitlement.
    entries = shop.client.v1.customers.retrieve_entitlements(shop.customer).data.entitlements
    assert [e.type for e in entries] == ["FEATURE", "CREDIT"]
    credit = entries[1]
    assert credit.type == "CREDIT" and credit.currency.currency_id == shop.currency
    assert (credit.usage_limit, credit.current_usage, credit.is_granted) == (11, 10, True)


def test_a_soft_limited_currency_is_listed_granted_beyond_its_balance(module_server: LiveServer) -> None:
    shop = PricedShop(module_server, soft_limit=True)
    shop.consume(50, "all")
    with module_server.http() as api:
        data = _data(api.get(_path(shop)))
        assert [(e["type"], e["isGranted"]) for e in data["entitlements"]] == [("FEATURE", True), ("CREDIT", True)]
        assert data["entitlements"][1] == currency_check(api, shop)
        assert balance_of(currency_check(api, shop, requestedUsage=1000))[:2] == (True, None)


def test_a_warm_currency_check_reads_nothing_and_follows_every_change(
    module_server: LiveServer, test_clock: TestClock
) -> None:
    test_clock.set(START)
    shop = PricedShop(module_server)
    server = module_server
    with server.http() as api:
        assert balance_of(from_memory(server, api, shop)) == (True, None, 10)
        assert balance_of(from_memory(server, api, shop, 11)) == (False, "InsufficientCredits", 10)

        shop.consume(4, "a")
        assert balance_of(from_memory(server, api, shop)) == (True, None, 6)

        promo = shop.promo(100, expire_at=START + timedelta(hours=1))
        assert balance_of(from_memory(server, api, shop, 106)) == (True, None, 106)

        reserve = {"reserveAmount": 100, "reservationId": f"{shop.customer}-hold", "reservationTtlSeconds": 60}
        assert currency_check(api, shop, **reserve)["reservation"]["status"] == "ACTIVE"
        held = from_memory(server, api, shop)
        assert (balance_of(held)[2], held["reserved"]) == (6, 100)

        test_clock.advance(timedelta(seconds=61))  # the hold lapses: nothing is written, the answer follows
        lapsed = from_memory(server, api, shop)
        assert (balance_of(lapsed)[2], lapsed["reserved"]) == (106, 0)

        shop.client.v1.credits.grants.void(promo)
        assert balance_of(from_memory(server, api, shop)) == (True, None, 6)

        shop.promo(20, expire_at=test_clock.now() + timedelta(minutes=30))
        assert balance_of(from_memory(server, api, shop)) == (True, None, 26)
        test_clock.advance(timedelta(minutes=30))  # it expires: again no write
        assert balance_of(from_memory(server, api, shop)) == (True, None, 6)

        shop.promo(4, effective_at=test_clock.now() + timedelta(minutes=10))  # a grant that starts later
        assert balance_of(from_memory(server, api, shop)) == (True, None, 6)
        test_clock.advance(timedelta(minutes=10))
        assert balance_of(from_memory(server, api, shop)) == (True, None, 10)

        (usage,) = shop.client.v2.usage.report(
            usages=[{"customer_id": shop.customer, "feature_id": shop.feature, "value": 5}]
        ).data.usages
        assert usage.credit is not None and usage.credit.consumed == 10
        assert balance_of(from_memory(server, api, shop)) == (False, "InsufficientCredits", 0)

        shop.client.v1.credits.custom_currencies.update(shop.currency, display_name="AI credits")
        assert from_memory(server, api, shop)["currency"]["displayName"] == "AI credits"

        shop.client.v1.customers.archive(shop.customer)
        assert balance_of(from_memory(server, api, shop)) == (False, "CustomerIsArchived", 0)
        shop.client.v1.customers.unarchive(shop.customer)
        assert balance_of(from_memory(server, api, shop)) == (False, "InsufficientCredits", 0)

        assert balance_of(currency_check(api, shop, resourceId="elsewhere")) == (False, "InsufficientCredits", 0)
        unknown = api.get(f"{_path(shop)}/check", params={"currencyId": "nope"})
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "NOT_FOUND")
        nobody = _data(api.get("/api/v1/customers/nobody/entitlements/check", params={"currencyId": shop.currency}))
        assert balance_of(nobody) == (False, "CustomerNotFound", 0)
        too_precise = api.get(f"{_path(shop)}/check", params={"currencyId": shop.currency, "requestedUsage": "1e-9"})
        assert too_precise.status_code == 400, too_precise.text
        no_amount = api.get(f"{_path(shop)}/check", params={"currencyId": shop.currency, "reservationId": "r"})
        assert (no_amount.status_code, no_amount.json()["error"]["code"]) == (400, "INVALID_ARGUMENT")
        assert no_amount.json()["error"]["message"].startswith("reservationId")


# -- the snapshot's own rules, without a server -------------------------------------------------------


def test_a_currency_edit_here_or_elsewhere_drops_the_environments_currencies_and_customers() -> None:
    snapshot = Snapshot()
    snapshot.caught_up()
    currency = CurrencyView("credits", "Credits", None, {}, None, None, NOW)

    def keep() -> None:
        version = snapshot.version()
        assert snapshot.keep_customer(1, "acme", None, _view(), {}, version, Standing({}, {}))
        assert snapshot.keep_currency(1, "credits", currency, version)
        assert snapshot.keep_currency(2, "credits", currency, version)
        assert snapshot.credits(1, "acme", None, NOW) is not None

    keep()
    snapshot.committed(1, [CurrencyChanged(env_id=1, currency_ref="credits")])
    assert snapshot.customer(1, "acme", None, NOW) is None and snapshot.credits(1, "acme", None, NOW) is None
    assert snapshot.currency(1, "credits") is not currency  # forgotten (MISSING), not "known not to exist"
    assert snapshot.currency(2, "credits") == currency  # another environment's stay

    keep()
    began = snapshot.version()
    SnapshotFeed(snapshot, "sqlite:///elsewhere.db").changed(
        [Item(id=1, environment_id=1, kind=KIND_CURRENCIES, customer_ref="", data={}, created_at=NOW)]
    )
    assert snapshot.customer(1, "acme", None, NOW) is None
    assert snapshot.currency(1, "credits") is not currency
    assert not snapshot.keep_currency(1, "credits", currency, began)  # a read begun before the edit
    assert not snapshot.keep_customer(1, "acme", None, _view(), {}, began, Standing({}, {}))


def test_held_credits_lapse_at_their_first_wallet_change() -> None:
    snapshot = Snapshot()
    snapshot.caught_up()
    zero = Balance(Decimal(0), Decimal(0), Decimal(0), Decimal(0), None)
    later, sooner = NOW + timedelta(hours=2), NOW + timedelta(hours=1)
    held = Standing({"a": WalletState(zero, later), "b": WalletState(zero, sooner), "c": WalletState(zero, None)}, {})
    assert snapshot.keep_customer(1, "acme", None, _view(), {}, snapshot.version(), held)
    assert snapshot.credits(1, "acme", None, sooner - timedelta(seconds=1)) == held
    assert snapshot.credits(1, "acme", None, sooner) is None
