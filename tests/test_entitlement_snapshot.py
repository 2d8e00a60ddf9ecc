"""Checks and lists served from memory, kept exact (docs/architecture.md, "The entitlement snapshot").

In one process: a warm answer reads nothing of the customer, a write is visible to the next read, time
passing a boundary changes the answer with no notification, and a process that may have missed a
notification answers from the database until it has read the whole change log again. Across two
processes, see tests/test_entitlement_snapshot_processes.py.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import stigg
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import update

from entitle import domain_events
from entitle.clock import utcnow
from entitle.customers.events import EntitlementsChanged
from entitle.db import Database
from entitle.entitlements import answers, service
from entitle.entitlements.snapshot import CustomerView, Snapshot
from entitle.environments.service import ensure_environment, environment_pk
from entitle.promotions.models import PromotionalEntitlement
from entitle.push import service as push_service
from entitle.push.schemas import Item
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.statements import statements as counted_statements
from tests.test_core_path import build_catalog

# What a request may read besides the customer's data: its key (re-read once a second) and the hub's
# reading of the change log.
BOOKKEEPING = ("api_keys", "push_events")


def statements(db: Database) -> AbstractContextManager[list[str]]:
    """Every SQL statement run on the database's engines meanwhile, by any thread (bookkeeping left out)."""
    return counted_statements(db, this_thread_only=False, counted=_not_bookkeeping)


def _not_bookkeeping(statement: str) -> bool:
    return statement not in ("BEGIN", "COMMIT", "ROLLBACK") and not any(t in statement for t in BOOKKEEPING)


def check(api: httpx.Client, customer: str, feature: str, **params: Any) -> dict[str, Any]:
    response = api.get(f"/api/v1/customers/{customer}/entitlements/check", params={"featureId": feature, **params})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def listing(api: httpx.Client, customer: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/customers/{customer}/entitlements")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def warm(server: LiveServer, api: httpx.Client, customer: str, feature: str) -> dict[str, Any]:
    """Check until the answer comes from memory (the hub must have read the log once first)."""
    for _ in range(500):
        with statements(server.db) as seen:
            answer = check(api, customer, feature)
        if not seen:
            return answer
    raise AssertionError("the check never came from memory")


@pytest.fixture
def acme(server: LiveServer, client: stigg.Stigg, api: httpx.Client, test_clock: TestClock) -> str:
    build_catalog(client)
    client.v1.customers.provision(id="acme")
    response = api.post("/api/v1/subscriptions", json={"customerId": "acme", "planId": "free"})
    assert response.status_code == 200, response.text
    return "acme"


def test_a_warm_check_and_list_read_nothing_and_see_the_next_write(
    server: LiveServer, api: httpx.Client, acme: str
) -> None:
    assert warm(server, api, acme, "api-calls")["currentUsage"] == 0
    with statements(server.db) as seen:
        assert listing(api, acme)["entitlements"]  # the same view answers the list
        assert check(api, acme, "sso")["accessDeniedReason"] == "NoFeatureEntitlementInSubscription"
        assert check(api, acme, "nope")["accessDeniedReason"] == "FeatureNotFound"
    assert len(seen) == 2  # the two features the customer lacks, read once each
    with statements(server.db) as seen:
        assert check(api, acme, "sso")["feature"]["displayName"] == "SSO"
        assert check(api, acme, "nope")["accessDeniedReason"] == "FeatureNotFound"
    assert seen == []

    # Each write is visible to the very next read of this process.
    usage = {"usages": [{"customerId": acme, "featureId": "api-calls", "value": 100}]}
    assert api.post("/api/v2/usage", json=usage).status_code == 200
    denied = check(api, acme, "api-calls", requestedUsage=1)
    assert (denied["isGranted"], denied["currentUsage"]) == (False, 100)
    assert api.patch("/api/v1/features/sso", json={"displayName": "Single sign-on"}).status_code == 200
    assert check(api, acme, "sso")["feature"]["displayName"] == "Single sign-on"
    grant = {"promotionalEntitlements": [{"featureId": "sso", "period": "1 week"}]}
    assert api.post(f"/api/v1/customers/{acme}/promotional-entitlements", json=grant).status_code == 200
    assert check(api, acme, "sso")["isGranted"]
    assert api.post("/api/v1/features", json={"id": "late", "displayName": "Late", "featureType": "BOOLEAN"}).is_success
    assert check(api, acme, "late")["accessDeniedReason"] == "NoFeatureEntitlementInSubscription"
    assert api.post(f"/api/v1/customers/{acme}/archive").status_code == 200
    assert check(api, acme, "sso")["accessDeniedReason"] == "CustomerIsArchived"
    assert listing(api, acme)["accessDeniedReason"] == "CustomerIsArchived"
    assert api.post(f"/api/v1/customers/{acme}/unarchive").status_code == 200
    assert check(api, acme, "sso")["isGranted"]  # the promotion counts again


def test_time_passing_a_boundary_changes_the_answer_with_no_notification(
    server: LiveServer, api: httpx.Client, acme: str, test_clock: TestClock
) -> None:
    grant = {"promotionalEntitlements": [{"featureId": "sso", "period": "1 week"}]}
    assert api.post(f"/api/v1/customers/{acme}/promotional-entitlements", json=grant).status_code == 200
    usage = {"usages": [{"customerId": acme, "featureId": "api-calls", "value": 100}]}
    assert api.post("/api/v2/usage", json=usage).status_code == 200
    assert warm(server, api, acme, "sso")["isGranted"]
    assert check(api, acme, "api-calls", requestedUsage=1)["isGranted"] is False

    # No job runs and nothing is committed: the promotion's end alone changes the answer.
    test_clock.advance(timedelta(days=7))
    assert check(api, acme, "sso")["accessDeniedReason"] == "NoFeatureEntitlementInSubscription"
    # And the monthly window's reset (Jan 15 + 1 month) the usage.
    test_clock.advance(timedelta(days=24))
    fresh = check(api, acme, "api-calls", requestedUsage=1)
    assert (fresh["isGranted"], fresh["currentUsage"]) == (True, 0)


def test_a_view_holds_until_the_first_end_of_what_it_was_read_from(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, test_clock: TestClock
) -> None:
    """Trial ends and subscription ends bound a view too: from then on it is read again, and answers as
    a read from the database does at that instant (jobs, not the clock, end subscriptions)."""
    build_catalog(client)
    client.v1.customers.provision(id="trial")
    trial_config = {"isTrial": True, "trialEndDate": (test_clock.now() + timedelta(days=9)).isoformat()}
    body = {"customerId": "trial", "planId": "pro", "trialOverrideConfiguration": trial_config}
    trial = api.post("/api/v1/subscriptions", json=body)
    assert trial.status_code == 200, trial.text
    trial_end = datetime.fromisoformat(trial.json()["data"]["subscription"]["trialEndDate"])
    client.v1.customers.provision(id="ending")
    ending = api.post("/api/v1/subscriptions", json={"customerId": "ending", "planId": "free"})
    assert ending.status_code == 200, ending.text
    sub_id = ending.json()["data"]["subscription"]["id"]
    end = test_clock.now() + timedelta(days=3)
    cancel = {"cancellationTime": "SPECIFIC_DATE", "endDate": end.isoformat()}
    assert api.post(f"/api/v1/subscriptions/{sub_id}/cancel", json=cancel).status_code == 200

    env = environment_pk(server.db, "development")
    for customer, bound in (("trial", trial_end), ("ending", end)):
        held = service._load(server.db, live_snapshot(), env, customer, None, None, test_clock.now())
        assert held is not None and held.view.valid_until is not None
        assert test_clock.now() < held.view.valid_until <= bound
    for _ in range(4):
        for customer in ("trial", "ending"):
            assert listing(api, customer) == answer_read_afresh(server, env, customer)
        test_clock.advance(timedelta(days=5))


def live_snapshot() -> Snapshot:
    snapshot = Snapshot()
    snapshot.caught_up()
    return snapshot


def answer_read_afresh(server: LiveServer, env: int, customer: str) -> dict[str, Any]:
    """What the list answers when nothing is held: a snapshot that never went live keeps nothing."""
    held = service._load(server.db, Snapshot(), env, customer, None, None, utcnow(), want_credits=True)
    assert held is not None
    listed = answers.listing(held.view, held.usage, held.credits)
    data: dict[str, Any] = listed.model_dump(mode="json", by_alias=True)
    return data


def test_a_process_that_may_have_missed_a_change_reads_afresh(
    server: LiveServer, api: httpx.Client, acme: str, test_clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = {"promotionalEntitlements": [{"featureId": "sso", "period": "1 month"}]}
    assert api.post(f"/api/v1/customers/{acme}/promotional-entitlements", json=grant).status_code == 200
    assert warm(server, api, acme, "sso")["isGranted"]

    # A change no notification tells of (written behind the application's back) ...
    with server.db.transaction() as s:
        s.execute(update(PromotionalEntitlement).values(end_date=test_clock.now() - timedelta(seconds=1)))
    assert check(api, acme, "sso")["isGranted"]  # ... is not seen from memory ...

    # ... until the hub loses its reading of the change log (a dropped connection, say): from then on,
    # and once it reads again, nothing held before is trusted.
    real = push_service.newer_than
    failures = [1]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            failures.pop()
            raise ConnectionError("the change log cannot be read")
        return real(*args, **kwargs)

    monkeypatch.setattr(push_service, "newer_than", flaky)
    # Another customer's change wakes the hub (PostgreSQL); the SQLite hub polls anyway.
    assert api.post("/api/v1/customers", json={"id": "bystander", "subscriptionParams": {"planId": "free"}}).is_success
    for _ in range(10_000):
        with statements(server.db) as seen:
            answer = check(api, acme, "sso")
        if not failures and seen:  # no longer answered from memory
            break
    assert not failures and seen
    assert answer["accessDeniedReason"] == "NoFeatureEntitlementInSubscription"
    assert warm(server, api, acme, "sso")["isGranted"] is False  # and it serves from memory again


def test_a_revoked_server_key_is_refused_at_once_by_the_process_that_revoked_it(
    server: LiveServer, api: httpx.Client, acme: str
) -> None:
    doomed = server.key()
    with server.http(doomed) as http:
        assert http.get(f"/api/v1/customers/{acme}/entitlements/check", params={"featureId": "sso"}).is_success
        pk = next(k["id"] for k in api.get("/api/v1/keys").json()["data"] if doomed.startswith(k["prefix"]))
        assert api.post(f"/api/v1/keys/{pk}/revoke").status_code == 200
        refused = http.get(f"/api/v1/customers/{acme}/entitlements/check", params={"featureId": "sso"})
        assert refused.status_code == 401


# -- the snapshot alone ------------------------------------------------------------------------------


NOW = datetime(2026, 1, 15, 12, 0).astimezone()


def view(valid_for: timedelta | None = None) -> CustomerView:
    return CustomerView(
        customer_pk=1,
        archived=False,
        has_subscription=True,
        grants={},
        loaded_at=NOW,
        valid_until=NOW + valid_for if valid_for is not None else None,
    )


Op = tuple[str, int]
OPS = ["read", "keep", "drop", "drop_usage", "drop_features", "lost", "up"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["read", "keep", "drop", "drop_usage", "drop_features", "lost", "up"]), st.integers(0, 2)
        ),
        max_size=40,
    )
)
def test_a_read_begun_before_a_drop_is_never_kept(ops: list[Op]) -> None:
    """Interleave loads (a version read, later a keep) with drops: what is held is never older than the
    last drop of its customer, and nothing is held while the feed is not live."""
    snapshot = live_snapshot()
    began: dict[int, int] = {}  # customer -> version its pending read began at
    dropped_at: dict[int, int] = {}  # customer -> version of its last drop
    for op, n in ops:
        ref = f"c{n}"
        if op == "read":
            began[n] = snapshot.version()
        elif op == "keep" and n in began:
            kept = snapshot.keep_customer(1, ref, None, view(), {}, began[n])
            assert kept == (snapshot.live and began[n] >= dropped_at.get(n, 0))
        elif op in ("drop", "drop_usage"):
            (snapshot.drop_customer if op == "drop" else snapshot.drop_usage)(1, ref)
            dropped_at[n] = snapshot.version()
        elif op in ("drop_features", "lost", "up"):
            {"drop_features": lambda: snapshot.drop_features(1), "lost": snapshot.lost, "up": snapshot.caught_up}[op]()
            for other in range(3):
                dropped_at[other] = snapshot.version()
            if op == "lost":
                assert len(snapshot) == 0
        if not snapshot.live:
            assert snapshot.customer(1, ref, None, NOW) is None


def test_views_expire_and_memory_is_bounded() -> None:
    snapshot = Snapshot(max_customers=3)
    snapshot.caught_up()
    assert snapshot.keep_customer(1, "short", None, view(timedelta(hours=1)), {}, snapshot.version())
    assert snapshot.customer(1, "short", None, NOW + timedelta(minutes=59)) is not None
    assert snapshot.customer(1, "short", None, NOW + timedelta(hours=1)) is None
    assert snapshot.customer(1, "short", None, NOW - timedelta(seconds=1)) is None  # read after that instant
    for n in range(10):
        snapshot.keep_customer(1, f"c{n}", None, view(), {}, snapshot.version())
        assert len(snapshot) <= 3
    assert snapshot.customer(1, "c9", None, NOW) is not None and snapshot.customer(1, "c0", None, NOW) is None


def test_a_cold_customer_is_read_in_a_bounded_number_of_queries(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, test_clock: TestClock
) -> None:
    """Not one query per feature, package or promotion: a customer with three add-ons granting 20 more
    features and two promotions is read in as many queries as one with none."""
    build_catalog(client)
    refs = [f"f{n}" for n in range(20)]
    for ref in ("beta", "gamma"):
        client.v1.features.create_feature(id=ref, display_name=ref, feature_type="BOOLEAN")
    for ref in refs:
        client.v1.features.create_feature(id=ref, display_name=ref, feature_type="NUMBER", meter_type="INCREMENTAL")
    for n in range(3):
        grants = [{"type": "FEATURE", "id": ref, "usage_limit": 10, "reset_period": "MONTH"} for ref in refs[n::3]]
        client.v1.addons.create(id=f"pack-{n}", display_name=f"Pack {n}", product_id="main")
        client.v1.addons.entitlements.create(f"pack-{n}", entitlements=grants)
        client.v1.addons.publish(f"pack-{n}", migration_type="NEW_CUSTOMERS")
    client.v1.plans.create(id="team", display_name="Team", product_id="main", parent_plan_id="free")
    client.v1.plans.entitlements.create("team", entitlements=[{"type": "FEATURE", "id": "sso"}])
    client.v1.plans.update("team", compatible_addon_ids=["pack-0", "pack-1", "pack-2"])
    client.v1.plans.publish("team", migration_type="NEW_CUSTOMERS")
    addons = [{"id": f"pack-{n}", "quantity": 1} for n in range(3)]
    for customer, extra in (("lean", {}), ("rich", {"addons": addons})):
        client.v1.customers.provision(id=customer)
        body = {"customerId": customer, "planId": "team", **extra}
        assert api.post("/api/v1/subscriptions", json=body).status_code == 200
    promos = {"promotionalEntitlements": [{"featureId": ref, "period": "1 month"} for ref in ("beta", "gamma")]}
    assert api.post("/api/v1/customers/rich/promotional-entitlements", json=promos).status_code == 200

    env = environment_pk(server.db, "development")
    counts = {}
    for customer in ("lean", "rich"):
        with statements(server.db) as seen:
            held = service._load(server.db, live_snapshot(), env, customer, None, None, test_clock.now())
        assert held is not None
        counts[customer] = (len(seen), len(held.view.grants))
    assert counts["rich"][1] == counts["lean"][1] + 22  # 20 features and two promotions
    assert counts["rich"][0] == counts["lean"][0] <= 12, counts


def test_the_hub_does_not_drop_again_what_this_process_wrote() -> None:
    """Rows this process appended reached its snapshot at commit: the hub skips them when it reads
    them, on that database only, and forgets ids of transactions that rolled back."""
    here, elsewhere = "sqlite:///here.db", "sqlite:///elsewhere.db"
    with push_service._written_lock:
        push_service._written_here.update({(here, 3), (here, 5), (elsewhere, 4)})

    def item(n: int) -> Item:
        return Item(id=n, environment_id=1, kind="entitlements.updated", customer_ref="c", data={}, created_at=NOW)

    assert push_service.written_here(here, [item(4), item(5)]) == {5}
    assert push_service.written_here(here, [item(6)]) == set()
    with push_service._written_lock:
        assert (here, 3) not in push_service._written_here  # below what was read: it never committed
        assert (elsewhere, 4) in push_service._written_here
        push_service._written_here.discard((elsewhere, 4))


def test_a_row_of_ours_is_skipped_only_once_this_process_heard_its_commit(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub may read a row this process appended as soon as it is committed, before the committing
    thread has told this process's caches (`domain_events.on_commit`: the snapshot's drop). Until then the
    row is not one to skip (the hub drops what it names, as another process's: a stream fed next must not
    make a client re-read the state it replaced); from then on it is."""
    env = ensure_environment(db, "development").pk
    here = push_service.database_key(db.url)
    before_heard: list[set[int]] = []
    real = domain_events._announce

    def announce(events: list[domain_events.DomainEvent]) -> None:
        with push_service._written_lock:
            before_heard.append({i for database, i in push_service._written_here if database == here})
        real(events)

    monkeypatch.setattr(domain_events, "_announce", announce)
    with db.transaction() as s:
        domain_events.publish(s, EntitlementsChanged(env_id=env, customer_ref="c"))
    appended = push_service.newest_id(db)
    assert appended > 0
    assert len(before_heard) == 1 and appended not in before_heard[0]
    row = Item(id=appended, environment_id=env, kind="entitlements.updated", customer_ref="c", data={}, created_at=NOW)
    assert push_service.written_here(here, [row]) == {appended}
