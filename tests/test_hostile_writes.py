"""Hostile input at every other write endpoint: updates, actions and deletes (test_hostile_inputs.py has the
creating writes). Each case of `CASES` makes what its write acts on (fresh ids: the cases share the
module's server, in any order), a valid body, and the reads that show the state the write may change.
Hostile values go into every node of the body and into every path parameter (ids with `/`, `..`, NUL,
very long, percent-encoded); whatever the answer it is never a 5xx, and a refused write leaves those
reads exactly as they were. The table is checked against the app's routes: a new write route fails
`test_every_write_route_is_in_a_hostile_table` until it has a case. Then arbitrary JSON (hypothesis) for
a few representative bodies.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import given
from hypothesis import strategies as st

from entitle.app import create_app
from tests.conftest import LiveServer
from tests.support.hostile import (
    HOSTILE,
    WRITES,
    Make,
    Target,
    node_at,
    nodes,
    read_state,
    seeded_client,
    send_raw,
    with_raw,
)
from tests.support.hostile_cases import CASES, HOSTILE_IDS, Case
from tests.support.stripe_emulator import StripeEmulator, running_emulator


@pytest.fixture(scope="module")
def seeded(module_server: LiveServer) -> Iterator[httpx.Client]:
    yield from seeded_client(module_server)


@pytest.fixture(scope="module")
def stripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StripeEmulator]:
    """The local Stripe emulator: connecting an integration checks its key with Stripe."""
    with running_emulator(tmp_path_factory.mktemp("hostile-stripe")) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def make(seeded: httpx.Client, module_server: LiveServer, stripe: StripeEmulator) -> Make:
    return Make(seeded, module_server, stripe_base=stripe.api_base, stripe_key=stripe.secret_key)


def _write_routes() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                # The API's writes. The console's forms are a thin layer over the same services, behind a
                # session and a CSRF token; their refusals are tested in test_console.py.
                if route.path.startswith("/api/"):
                    found.update((m, route.path) for m in route.methods if m in ("POST", "PUT", "PATCH", "DELETE"))
            elif hasattr(route, "original_router"):
                walk(route.original_router.routes)
            elif hasattr(route, "routes"):
                walk(route.routes)

    walk(create_app().router.routes)
    return found


def test_every_write_route_is_in_a_hostile_table() -> None:
    """A new write route must be added to CASES (or WRITES): this fails until it is."""
    covered = {(c.method, c.template) for c in CASES} | {("POST", w.path) for w in WRITES}
    missing = _write_routes() - covered
    assert not missing, f"write routes with no hostile-input case: {sorted(missing)}"
    assert not covered - _write_routes(), "cases name routes the app does not serve"


def _url(case: Case, target: Target, hostile: tuple[str, str] | None = None) -> str:
    params = {name: quote(value, safe="") for name, value in target.params.items()}
    if hostile is not None:
        params[hostile[0]] = hostile[1]
    return case.template.format(**params)


Build = Callable[[Target], tuple[str, str | None]]  # a request for the current target: (url, body text)


class Checker:
    """Sends hostile writes of one case and checks each answer: never a 5xx; a refusal is an error envelope
    and leaves the case's reads as they were.

    Requests go in batches (the values for one field or path parameter). A batch with no value accepted is
    checked once at its end: every read is as before it. A batch where some value was accepted (the state
    moved, legitimately) sends its refused values again as a batch of their own; should one of those be
    accepted now, each is sent once more alone, checked against the reads just before it. An accepted
    write of a case that uses up its target (an archive, a create) gets a new one.

    The reads before a batch are those that ended the previous one when nothing was accepted since (nothing
    else writes to a case's fresh entities): they are read again only after an accepted write.
    """

    def __init__(self, api: httpx.Client, make: Make, case: Case) -> None:
        self.api, self.make, self.case = api, make, case
        self.targets: list[Target] = []
        self.before: list[tuple[int, Any]] | None = None
        self.target = self._new_target()

    def _new_target(self) -> Target:
        target = self.case.make(self.make)
        self.targets.append(target)
        self.before = read_state(self.api, target.reads)
        return target

    def _state_before(self) -> list[tuple[int, Any]]:
        if self.before is None:
            self.before = read_state(self.api, self.target.reads)
        return self.before

    def _send(self, build: Build, where: str) -> bool:
        """Whether the write was refused (after checking the answer is not a 5xx)."""
        url, content = build(self.target)
        response = send_raw(self.api, self.case.method, url, content)
        assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:300]}"
        if response.status_code < 400:
            self.before = None  # the state moved
            if self.case.consumes:
                self.target = self._new_target()
            return False
        if response.headers.get("content-type") == "application/json":
            assert response.json()["error"]["code"], where
        else:  # only the router's own answers (an unroutable path) are not JSON
            assert response.status_code in (404, 405), f"{where} -> {response.status_code}: {response.text[:300]}"
        return True

    def batch(self, requests: list[tuple[str, Build]], *, again: bool = False) -> None:
        before = self._state_before()
        refused = [(where, build) for where, build in requests if self._send(build, where)]
        if len(refused) == len(requests):
            after = read_state(self.api, self.target.reads)
            wheres = [where for where, _ in refused]
            assert after == before, f"one of {wheres} was refused but changed {self.target.reads}"
            return
        if not again:  # the refused values once more, on the state the accepted ones left
            self.batch(refused, again=True)
            return
        for where, build in refused:
            before = self._state_before()
            if self._send(build, where):
                after = read_state(self.api, self.target.reads)
                assert after == before, f"{where} was refused but changed {self.target.reads}"

    def cleanup(self) -> None:
        for target in self.targets:
            if target.cleanup is not None:
                target.cleanup()


def _values_for(node: Any, path: tuple[Any, ...]) -> list[str]:
    """The hostile values (names in HOSTILE) for one node of a body: those its kind can meet, and a few of
    other kinds (a number where text goes, text where a number goes, an object, null). Every value of
    HOSTILE reaches the fields that can take it; the creating writes above get all of them everywhere."""
    numbers = ["huge", "huge-int", "tiny", "negative-huge", "nan", "infinity", "long-decimal"]
    texts = ["nul", "control", "slash-id", "long-text", "empty", "emoji"]
    dates = ["date-min", "date-max", "date-offset-overflow"]
    if not path:
        return ["nan", "list", "null", "empty"]
    if isinstance(node, dict | list):
        return ["null", "huge", "nul", "list" if isinstance(node, dict) else "object"]
    if isinstance(node, bool):
        return ["nan", "nul", "object", "null"]
    if isinstance(node, int | float):
        return [*numbers, "nul", "object", "null"]
    if isinstance(node, str):
        looks_like_a_date = node[:2] in ("19", "20") and "T" in node
        return [*texts, "dots", "huge", "object", "null", *(dates if looks_like_a_date else [])]
    return list(HOSTILE)


def _body_request(path: tuple[Any, ...], raw: str, case: Case) -> Build:
    def build(target: Target) -> tuple[str, str | None]:
        return _url(case, target), (raw if not path else with_raw(target.body, path, raw))

    return build


def _path_request(param: str, raw: str, case: Case) -> Build:
    def build(target: Target) -> tuple[str, str | None]:
        return _url(case, target, (param, raw)), (json.dumps(target.body) if target.body is not None else None)

    return build


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_no_hostile_value_in_a_body_or_a_path_is_a_server_error_or_a_partial_write(
    seeded: httpx.Client, make: Make, case: Case
) -> None:
    api = seeded
    check = Checker(api, make, case)
    try:
        body = check.target.body
        if body is not None:
            for path in nodes(body):
                if any(path[: len(pin)] == pin for pin in check.target.pinned):
                    continue
                node = node_at(body, path)
                where = f"{case.name} with {'.'.join(map(str, path)) or 'the body'} = "
                check.batch(
                    [(where + name, _body_request(path, HOSTILE[name], case)) for name in _values_for(node, path)]
                )
        for param in check.target.params:
            where = f"{case.name} with {param} = "
            check.batch([(where + name, _path_request(param, raw, case)) for name, raw in HOSTILE_IDS.items()])
        # The valid write itself answers as the table says (the table's bodies are meaningful).
        target = check.target
        content = json.dumps(target.body) if target.body is not None else None
        response = send_raw(api, case.method, _url(case, target), content)
        if target.expect == -1:
            assert 400 <= response.status_code < 500 or response.status_code == 200, response.text[:300]
        else:
            assert response.status_code == target.expect, f"{case.name}: {response.status_code} {response.text[:500]}"
    finally:
        check.cleanup()


# -- arbitrary JSON ---------------------------------------------------------------------------------------

_texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40) | st.sampled_from(
    ["", "\x00", "a/b", "..", "x" * 5000, "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "NaN", "1e400"]
)
_numbers = (
    st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([2**53 + 1, 2**63, -(2**63) - 1, 10**400])
)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | _numbers | _texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_texts, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def _hostile_bodies(draw: st.DrawFn, valid: dict[str, Any]) -> Any:
    """Arbitrary JSON, or the valid body with some of its nodes (at any depth) replaced by arbitrary JSON."""
    if draw(st.integers(0, 4)) == 0:
        return draw(_json)
    body = copy.deepcopy(valid)
    paths = [p for p in nodes(body) if p]
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True)):
        try:
            parent = node_at(body, path[:-1])
            parent[path[-1]] = draw(_json)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this node
    return body


REPRESENTATIVE = [
    "PATCH /api/v1/customers/{customer_id}",
    "PATCH /api/v1/subscriptions/{subscription_id}",
    "POST /api/v1/plans/{package_id}/entitlements",
    "POST /api/v1/usage",
]


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_arbitrary_json_is_never_a_server_error_and_a_refusal_writes_nothing(
    seeded: httpx.Client, make: Make, name: str
) -> None:
    case = next(c for c in CASES if c.name == name)
    target = case.make(make)
    assert target.body is not None

    # The reads after each example are the next one's "before" (one read per example, not two).
    last = {"before": read_state(seeded, target.reads)}

    @given(body=_hostile_bodies(target.body))
    def check(body: Any) -> None:
        content = json.dumps(body, allow_nan=True)
        response = send_raw(seeded, case.method, _url(case, target), content)
        assert response.status_code < 500, f"{content[:300]} -> {response.status_code}: {response.text[:300]}"
        after = read_state(seeded, target.reads)
        before, last["before"] = last["before"], after
        if response.status_code >= 400:
            assert response.json()["error"]["code"]
            assert after == before, f"{content[:300]} was refused but changed the state"

    check()
