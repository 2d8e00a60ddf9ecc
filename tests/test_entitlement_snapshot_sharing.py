"""What held customers cost the garbage collector (docs/architecture.md, "Garbage collection"): a full
collection visits every object it tracks, and a process holds up to 10,000 customers. Customers whose
grants resolve alike hold the same terms; what is a customer's own is, beyond a few objects, kept where
the collector does not look (dicts of atoms). Counted by object identity and `gc.is_tracked`, not timed."""

from __future__ import annotations

import gc
import weakref
from datetime import UTC, datetime

import httpx
import stigg

from entitle.catalog.packages.allowance import Allowance
from entitle.entitlements import answers, service
from entitle.entitlements.snapshot import CustomerView, FeatureView, GrantView, Snapshot, customer_view
from entitle.environments.service import environment_pk
from entitle.grants.engine import FOREVER, Window
from tests.conftest import LiveServer
from tests.support.clock import TestClock

METERED = [f"calls-{n}" for n in range(6)]  # each resets monthly: one window per customer for all of them
FLAGS = [f"flag-{n}" for n in range(6)]


def tracked_reachable(root: object) -> dict[int, object]:
    """Every object the collector tracks that `root` leads to (classes left out: every instance leads to its own)."""
    found: dict[int, object] = {}
    waiting = [root]
    while waiting:
        obj = waiting.pop()
        if id(obj) in found or isinstance(obj, type) or not gc.is_tracked(obj):
            continue
        found[id(obj)] = obj
        waiting.extend(gc.get_referents(obj))
    return found


def _catalog(client: stigg.Stigg, api: httpx.Client) -> None:
    for ref in METERED:
        client.v1.features.create_feature(id=ref, display_name=ref, feature_type="NUMBER", meter_type="INCREMENTAL")
    for ref in FLAGS:
        client.v1.features.create_feature(id=ref, display_name=ref, feature_type="BOOLEAN")
    client.v1.products.create_product(id="main", display_name="Main")
    client.v1.plans.create(id="team", display_name="Team", product_id="main")
    grants = [{"type": "FEATURE", "id": ref, "usage_limit": 100, "reset_period": "MONTH"} for ref in METERED]
    grants += [{"type": "FEATURE", "id": ref} for ref in FLAGS]
    client.v1.plans.entitlements.create("team", entitlements=grants)  # type: ignore[arg-type]
    client.v1.plans.publish("team", migration_type="NEW_CUSTOMERS")
    override = [{"type": "FEATURE", "id": METERED[0], "usageLimit": 7, "resetPeriod": "MONTH"}]
    for customer, extra in (("ann", {}), ("bob", {}), ("cid", {"entitlements": override})):
        body = {"id": customer, "subscriptionParams": {"planId": "team", **extra}}
        assert api.post("/api/v1/customers", json=body).status_code == 200


def test_customers_on_one_plan_version_share_its_terms_and_own_no_object_per_feature(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, test_clock: TestClock
) -> None:
    _catalog(client, api)
    env = environment_pk(server.db, "development")
    snapshot = Snapshot()
    snapshot.caught_up()
    held = {}
    for customer in ("ann", "bob", "cid"):
        found = service._load(server.db, snapshot, env, customer, None, None, test_clock.now(), want_credits=True)
        assert found is not None
        held[customer] = found
    ann, bob, cid = (held[c].view for c in ("ann", "bob", "cid"))
    assert ann.grants.keys() == bob.grants.keys() == cid.grants.keys() == set(METERED + FLAGS)

    # The same plan version: the same objects, not equal copies.
    assert ann.grants is bob.grants
    for ref in METERED + FLAGS:
        assert ann.grants[ref] is bob.grants[ref]
        assert ann.grants[ref].feature is bob.grants[ref].feature
    # An override is the customer's own terms; the feature's fields are still shared, as are its other grants.
    assert cid.grants[METERED[0]] is not ann.grants[METERED[0]]
    assert cid.grants[METERED[0]].allowance.usage_limit == 7
    assert cid.grants[METERED[0]].feature is ann.grants[METERED[0]].feature
    assert all(cid.grants[ref] is ann.grants[ref] for ref in METERED[1:] + FLAGS)
    assert cid.grants is not ann.grants

    # Each distinct window is kept once: the monthly one of the metered grants, the all-time one of the others.
    monthly = ann.window(METERED[0])
    assert monthly.end is not None and all(ann.window(ref) == monthly for ref in METERED)
    assert all(ann.window(ref) == FOREVER for ref in FLAGS)
    assert len(ann.spans) == 2

    # Listed once, each grant's JSON is kept; with the dates and the usage, in dicts the collector leaves alone.
    answers.listing_json(ann, held["ann"].usage, held["ann"].credits)
    assert ann.listed.keys() == set(METERED + FLAGS)
    untracked = (ann.updated_at, ann.window_of, ann.listed, ann.listed_usage, ann.credit_rates, held["ann"].usage)
    assert not any(gc.is_tracked(d) for d in untracked)
    # The collector untracks a tuple of atoms the first time it looks at it: the spans' inner tuples at one
    # full collection, the outer one (then a tuple of untracked tuples) at the next. Two, so that this does
    # not depend on how many young collections happened to run before (the GC's thresholds).
    gc.collect()
    gc.collect()
    assert not gc.is_tracked(ann.spans)

    # What only ann holds, of what the collector tracks: its view; nothing per feature.
    own = tracked_reachable(ann).keys() - tracked_reachable(bob).keys()
    assert own == {id(ann)}, [type(obj) for key, obj in tracked_reachable(ann).items() if key in own]
    # And what the snapshot keeps beside it: its resources and what is held of the one resource.
    slots = {customer: snapshot._customers[(env, customer)] for customer in ("ann", "bob")}
    own = tracked_reachable(slots["ann"]).keys() - tracked_reachable(slots["bob"]).keys()
    assert len(own) == 1 + 2, [type(obj) for key, obj in tracked_reachable(slots["ann"]).items() if key in own]


NOW = datetime(2026, 12, 5, tzinfo=UTC)


def _grant(limit: int, window: Window = FOREVER) -> GrantView:
    feature = FeatureView("seats", "Seats", "ACTIVE", "NUMBER", "FLUCTUATING", None, None)
    return GrantView(feature, Allowance(usage_limit=limit), window, NOW)


def _view(limit: int) -> CustomerView:
    return customer_view(1, has_subscription=True, grants={"seats": _grant(limit)}, loaded_at=NOW, valid_until=None)


def test_shared_terms_are_equal_values_only_and_go_with_the_last_view_holding_them() -> None:
    first, second, other = _view(5), _view(5), _view(6)
    assert first.grants["seats"] is second.grants["seats"]  # built from distinct but equal objects
    assert other.grants["seats"] is not first.grants["seats"]
    assert other.grants["seats"].allowance.usage_limit == 6

    assert first.grant("seats") == _grant(5)

    # Weakly shared: terms no view holds any more are not kept, so what is shared stays bounded by what is held.
    shared = weakref.ref(first.grants["seats"])
    feature = weakref.ref(first.grants["seats"].feature)
    del first
    assert shared() is not None  # the second view still holds them
    del second
    gc.collect()
    assert shared() is None
    assert feature() is other.grants["seats"].feature  # the feature's fields, shared with the other terms
    del other
    gc.collect()
    assert feature() is None
