"""The client's memory is bounded: at most `cache_size` states held, change marks for reads in flight
forgotten beyond a limit, and nothing forgotten ever makes a stale answer fresh."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entitle.sdk import AsyncEntitle, Entitle, Source
from entitle.sdk.cache import MemoryCache
from entitle.sdk.marks import DEFAULT_CACHE_SIZE, ChangeMarks, Held
from entitle.sdk.state import State, server_result
from entitle.sdk.store import EntitlementStore, FetchMark, Key
from tests.conftest import LiveServer
from tests.sdk.conftest import CountingTransport, seed

CUSTOMERS = tuple(f"c{n}" for n in range(1, 7))


def test_the_client_holds_at_most_cache_size_states(server: LiveServer, api: httpx.Client) -> None:
    seed(api, CUSTOMERS)
    transport = CountingTransport()
    with Entitle(server.key(), server.base_url, transport=transport, push=False, cache_size=2) as client:
        for customer in CUSTOMERS:
            assert client.get_entitlement(customer, "flag").source is Source.SERVER
        backend = client._store.backend
        assert isinstance(backend, MemoryCache)
        # Decoded: the 2 states written last; serialized in the default backend: 2 * 2 + 1 entries.
        assert sorted(client.cached_keys()) == [("c5", None), ("c6", None)]
        assert len(backend) == 5
        asked = transport.total
        # A state held is answered locally; one dropped from the decoded layer is read from the backend ...
        assert client.get_entitlement("c6", "seats", requested_usage=5).source is Source.CACHE
        assert client.get_entitlement("c2", "seats", requested_usage=5).source is Source.CACHE
        assert transport.total == asked
        assert len(client._store.hot) == 2 and ("c2", None) in client.cached_keys()
        # ... and one dropped from both is asked for again, and answered as the server answers.
        again = client.get_entitlement("c1", "seats", requested_usage=6)
        assert (again.source, again.is_granted, again.usage_limit) == (Source.SERVER, False, 5)
        assert transport.total == asked + 1
        assert len(client._store.hot) == 2 and len(backend) == 5


def test_the_default_client_is_bounded() -> None:
    client = Entitle("key", "http://127.0.0.1:9", push=False)
    try:
        assert client._store.hot.limit == DEFAULT_CACHE_SIZE
        assert client._store.credits.hot.limit == DEFAULT_CACHE_SIZE
        backend = client._store.backend
        assert isinstance(backend, MemoryCache) and backend.max_entries == 2 * DEFAULT_CACHE_SIZE + 1
    finally:
        client.close()
    sized = AsyncEntitle("key", "http://127.0.0.1:9", push=False, cache_size=5)
    try:
        assert (sized._store.hot.limit, sized._store.credits.hot.limit) == (5, 5)
        backend = sized._store.backend
        assert isinstance(backend, MemoryCache) and backend.max_entries == 11
    finally:
        asyncio.run(sized.close())
    with pytest.raises(ValueError):
        Entitle("key", "http://127.0.0.1:9", push=False, cache_size=0)


def test_held_drops_the_least_recently_written() -> None:
    held: Held[str, int] = Held(2)
    held.hold("a", 1)
    held.hold("b", 2)
    held.hold("a", 3)  # written again: now the newest
    held.hold("c", 4)
    assert dict(held) == {"a": 3, "c": 4}
    assert held.hold_if_absent("a", 9) == 3  # a reader's copy does not replace what a writer kept
    assert held.hold_if_absent("d", 5) == 5
    assert list(held) == ["c", "d"]  # reading "a" did not make it recent: "a" went first


def test_memory_cache_drops_the_least_recently_used_entries() -> None:
    cache = MemoryCache(max_entries=2)
    cache.set("a", "1")
    cache.set("b", "2")
    assert cache.get("a") == "1"  # read: now the most recently used
    cache.set("c", "3")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("1", None, "3")
    unbounded = MemoryCache()
    for n in range(100):
        unbounded.set(str(n), "v")
    assert len(unbounded) == 100


def test_change_marks_forget_the_oldest_and_distrust_reads_from_before_it() -> None:
    marks: ChangeMarks[str] = ChangeMarks(limit=2)
    sent = marks.ticks
    marks.move("a")
    assert not marks.unchanged_since("a", sent)
    assert marks.unchanged_since("b", sent)
    marks.move("b")
    marks.move("c")  # "a" is forgotten: a read sent before its change can no longer tell
    assert len(marks) == 2 and marks.at("a") == 0
    assert not marks.unchanged_since("b", sent)
    assert not marks.unchanged_since("a", sent)
    later = marks.ticks
    assert marks.unchanged_since("a", later)


KEYS: tuple[Key, ...] = (("a", None), ("b", None))
FEATURES = ("f", "g")


def _listed(current: int) -> dict[str, Any]:
    return {
        "entitlements": [
            {
                "feature": {"id": f, "featureType": "NUMBER"},
                "isGranted": True,
                "usageLimit": 100,
                "currentUsage": current,
            }
            for f in FEATURES
        ]
    }


# Weighted: a distrust invalidates every list in flight, so it is rare here, or it would hide the rest.
_KINDS = ("fetch",) * 4 + ("invalidate",) * 3 + ("usage",) * 3 + ("answered",) * 4 + ("distrust",)


@st.composite
def _operation(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(_KINDS))
    if kind in ("fetch", "invalidate"):
        return (kind, draw(st.sampled_from(KEYS)))
    if kind == "usage":
        return (kind, draw(st.sampled_from(KEYS)), draw(st.sampled_from(FEATURES)), draw(st.integers(0, 50)))
    if kind == "answered":
        return (kind, draw(st.integers(0, 7)), draw(st.integers(0, 50)))
    return (kind,)


operations = st.lists(_operation(), max_size=40)


# Cheap examples (no I/O), and a forgotten change shows only in a few interleavings: more of them.
@settings(max_examples=1000)
@given(operations, st.integers(1, 2), st.integers(1, 2))
def test_a_list_in_flight_is_kept_fresh_only_if_nothing_it_missed_was_forgotten(
    steps: list[tuple[Any, ...]], size: int, marks: int
) -> None:
    """Lists in flight, invalidations, pushed usage and distrust interleaved, the store's memory a few
    keys at most: a list answered is kept as valid only if no change of its key (or a distrust) came
    after it was asked for, and then with every usage pushed since laid over it. With nothing at all
    happening while it was in flight, it is kept as valid (the bound costs no re-read then)."""
    store = EntitlementStore(MemoryCache(max_entries=2), "t:", ttl=30.0, size=size, marks=marks)
    history: list[tuple[Any, ...]] = []  # every change, in order
    in_flight: list[tuple[Key, FetchMark, int]] = []
    for step in steps:
        kind = step[0]
        if kind == "fetch":
            in_flight.append((step[1], store.before_fetch(step[1]), len(history)))
        elif kind == "invalidate":
            store.invalidate(step[1][0], None)
            history.append(step)
        elif kind == "usage":
            store.set_usage(step[1], step[2], Decimal(step[3]))
            history.append(step)
        elif kind == "distrust":
            store.mark_all_invalid(time.time() + 1)
            history.append(step)
        elif in_flight:
            key, mark, since = in_flight.pop(step[1] % len(in_flight))
            state = store.store(key, _listed(step[2]), mark)
            missed = history[since:]
            changed = any(h[0] == "distrust" or (h[0] == "invalidate" and h[1] == key) for h in missed)
            if changed:
                assert not state.valid, (key, missed)
            if not missed:
                assert state.valid
            if state.valid:
                pushed = {h[2]: h[3] for h in missed if h[0] == "usage" and h[1] == key}
                for feature in FEATURES:
                    assert state.entries[feature].current_usage == Decimal(pushed.get(feature, step[2])), feature
        assert len(store.hot) <= size
        assert len(store._changes) <= marks and len(store._usage_set) <= marks


credit_operations = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.sampled_from("xy")),
        st.tuples(st.just("pushed"), st.sampled_from("xy"), st.integers(0, 50)),
        st.tuples(st.just("answered"), st.integers(0, 7), st.integers(0, 50)),
    ),
    max_size=40,
)


@settings(max_examples=1000)
@given(credit_operations, st.integers(1, 2))
def test_a_balance_read_in_flight_never_replaces_a_newer_one(steps: list[tuple[Any, ...]], marks: int) -> None:
    """Balances read from the server while others are pushed, the change marks a few keys at most: a read
    answered is kept only if no balance of its key was pushed after it was sent; kept when nothing at all
    was pushed meanwhile."""
    store = EntitlementStore(MemoryCache(), "t:", ttl=30.0, size=2, marks=marks)
    credits = store.credits
    newest: dict[str, int] = {}
    pushes = 0
    in_flight: list[tuple[str, int, int]] = []
    for step in steps:
        if step[0] == "read":
            in_flight.append((step[1], credits.moves(), pushes))
        elif step[0] == "pushed":
            credits.store((step[1], "gems", None), {"usageLimit": step[2], "currentUsage": 0})
            newest[step[1]] = pushes = pushes + 1
        elif in_flight:
            customer, sent, pushes_then = in_flight.pop(step[1] % len(in_flight))
            key = (customer, "gems", None)
            before = credits.hot.get(key)
            credits.store(key, {"usageLimit": step[2], "currentUsage": 0}, sent)
            kept = credits.hot.get(key)
            if newest.get(customer, 0) > pushes_then:  # a newer balance was pushed: never replaced
                assert kept is before
            if pushes == pushes_then:
                assert kept is not None and kept.usage_limit == step[2]
        assert len(credits.hot) <= 2


def test_a_state_keeps_only_what_its_answers_read() -> None:
    """A held state drops what no answer reads (names, units, status, the last change's instant, nulls):
    every answer from it, and from its serialized copy, is the one the full list gives."""
    full = {
        "type": "FEATURE",
        "isGranted": True,
        "accessDeniedReason": None,
        "currentUsage": 3,
        "usageLimit": 10,
        "hasUnlimitedUsage": False,
        "hasSoftLimit": False,
        "enumValues": None,
        "requestedUsage": None,
        "requestedValues": None,
        "resetPeriod": "MONTH",
        "usagePeriodAnchor": "2026-12-01T00:00:00Z",
        "usagePeriodStart": "2026-12-01T00:00:00+00:00",
        "usagePeriodEnd": "2099-01-01T00:00:00+00:00",
        "validUntil": None,
        "entitlementUpdatedAt": "2026-12-06T06:39:25.297686Z",
        "feature": {
            "id": "calls",
            "displayName": "Calls",
            "featureStatus": "ACTIVE",
            "featureType": "NUMBER",
            "featureUnits": "call",
            "featureUnitsPlural": "calls",
        },
    }
    enum = {**full, "feature": {**full["feature"], "id": "regions", "featureType": "ENUM"}, "enumValues": ["eu"]}
    denied = {**full, "feature": {**full["feature"], "id": "off"}, "isGranted": False, "accessDeniedReason": "X"}
    state = State.from_wire({"entitlements": [full, enum, denied]}, 0.0)
    kept = state.entries["calls"].raw
    assert set(kept) == {
        "type",
        "isGranted",
        "currentUsage",
        "usageLimit",
        "hasUnlimitedUsage",
        "hasSoftLimit",
        "resetPeriod",
        "usagePeriodStart",
        "usagePeriodEnd",
        "feature",
    }
    assert kept["feature"] == {"id": "calls", "featureType": "NUMBER"}
    again = State.loads(state.dumps())
    assert again is not None
    for wire in (full, enum, denied):
        feature = wire["feature"]["id"]  # type: ignore[index]
        for held in (state, again):
            for usage in (None, Decimal(1), Decimal(8)):
                assert server_result(held.entries[feature].raw, "c", feature, None, usage, None) == server_result(
                    wire, "c", feature, None, usage, None
                ), (feature, usage)
