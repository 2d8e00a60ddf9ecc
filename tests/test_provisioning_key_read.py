"""Provisioning a customer reads its API key as the first statement of its own transaction
(`environments.service.KeyRead`), not in a read of its own before it: the answers stay those of a route
whose dependency reads the key (`POST /api/v1/subscriptions`, `server_key`), in the same order (the key
is answered for before the body), a key revoked by another process is refused on the very next request
and the refusal writes nothing, and the key's use is still recorded.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from entitle.clock import utcnow
from entitle.environments.models import ApiKey, KeyKind
from entitle.environments.service import hash_key
from tests.conftest import LiveServer

_ids = itertools.count()


@pytest.fixture(scope="module")
def plan(module_server: LiveServer) -> LiveServer:
    with module_server.http() as api:
        api.post("/api/v1/products", json={"id": "keyed", "displayName": "Keyed"}).raise_for_status()
        api.post(
            "/api/v1/plans", json={"id": "keyed-plan", "displayName": "P", "productId": "keyed"}
        ).raise_for_status()
        api.post("/api/v1/plans/keyed-plan/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()
    return module_server


def _revoke(server: LiveServer, raw_key: str) -> None:
    """As another process (or the CLI) revokes it: straight in the database, past this process's caches."""
    with server.db.transaction() as s:
        s.execute(update(ApiKey).where(ApiKey.key_hash == hash_key(raw_key)).values(revoked_at=utcnow()))


def _answer(response: httpx.Response) -> tuple[int, Any]:
    return response.status_code, response.json()


def _customer_ids(server: LiveServer) -> set[str]:
    with server.http() as api:
        return {c["id"] for c in api.get("/api/v1/customers", params={"limit": 100}).json()["data"]}


def test_a_key_revoked_elsewhere_is_refused_by_the_next_provisioning_which_writes_nothing(plan: LiveServer) -> None:
    doomed = plan.key()
    first, second = f"keyed-{next(_ids)}", f"keyed-{next(_ids)}"
    with plan.http(doomed) as api:
        body = {"id": first, "subscriptionParams": {"planId": "keyed-plan"}}
        assert api.post("/api/v1/customers", json=body).status_code == 200
        _revoke(plan, doomed)
        refused = api.post("/api/v1/customers", json={"id": second, "subscriptionParams": {"planId": "keyed-plan"}})
    assert _answer(refused) == (401, {"error": {"code": "UNAUTHENTICATED", "message": "unknown or revoked API key"}})
    assert first in _customer_ids(plan) and second not in _customer_ids(plan)


@pytest.mark.parametrize("body_kind", ["valid", "invalid"])
def test_key_refusals_are_answered_as_a_route_reading_its_key_first_answers_them(
    plan: LiveServer, body_kind: str
) -> None:
    """Missing, unknown, revoked and client keys, and an environment header naming another environment:
    the same status and error as `POST /api/v1/subscriptions` (whose dependency reads the key), also when
    the body is invalid (the key is answered for first), and no customer is written."""
    revoked, client = plan.key(), plan.key(kind=KeyKind.CLIENT)
    _revoke(plan, revoked)
    callers: dict[str, dict[str, str]] = {
        "missing": {},
        "empty": {"X-API-KEY": ""},
        "unknown": {"X-API-KEY": "server-development-" + "A" * 43},
        "revoked": {"X-API-KEY": revoked},
        "client": {"X-API-KEY": client},
        "other environment": {"X-API-KEY": plan.server_key, "X-ENVIRONMENT-ID": "production"},
    }
    before = _customer_ids(plan)
    answers: dict[str, tuple[tuple[int, Any], tuple[int, Any]]] = {}
    with httpx.Client(base_url=plan.base_url, timeout=30) as http:
        for name, headers in callers.items():
            customer_id = f"keyed-{next(_ids)}"
            if body_kind == "valid":
                provision = {"id": customer_id, "subscriptionParams": {"planId": "keyed-plan"}}
                subscribe = {"customerId": customer_id, "planId": "keyed-plan"}
            else:
                provision = {"id": customer_id, "subscriptionParams": {"planId": 7}, "unknownField": 1}
                subscribe = {"customerId": customer_id, "planId": 7, "unknownField": 1}
            provisioned = _answer(http.post("/api/v1/customers", json=provision, headers=headers))
            subscribed = _answer(http.post("/api/v1/subscriptions", json=subscribe, headers=headers))
            answers[name] = (provisioned, subscribed)
    for name, (provisioned, subscribed) in answers.items():
        assert provisioned == subscribed, name
        assert provisioned[0] in (400, 401, 403), (name, provisioned)
    assert {name: pair[0][0] for name, pair in answers.items()} == {
        "missing": 401,
        "empty": 401,
        "unknown": 401,
        "revoked": 401,
        "client": 403,
        "other environment": 400,
    }
    assert answers["other environment"][0][1]["error"]["code"] == "ENVIRONMENT_MISMATCH"
    assert _customer_ids(plan) == before


def test_a_body_refused_with_a_good_key_is_still_refused(plan: LiveServer) -> None:
    """With a key that passes, the validation error is the route's own (the key read for it changes nothing)."""
    with plan.http() as api:
        customer_id = f"keyed-{next(_ids)}"
        answer = api.post("/api/v1/customers", json={"id": customer_id, "subscriptionParams": {"planId": 7}})
        malformed = api.post("/api/v1/customers", content=b"{", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert customer_id not in _customer_ids(plan)


def _last_used(server: LiveServer, raw_key: str) -> Any:
    with server.db.read() as s:
        return s.scalar(select(ApiKey.last_used_at).where(ApiKey.key_hash == hash_key(raw_key)))


@pytest.mark.parametrize("outcome", ["provisioned", "refused by the use case"])
def test_the_keys_use_is_recorded_whether_the_provisioning_succeeds_or_not(plan: LiveServer, outcome: str) -> None:
    fresh = plan.key()
    assert _last_used(plan, fresh) is None
    plan_id = "keyed-plan" if outcome == "provisioned" else "no-such-plan"
    with plan.http(fresh) as api:
        answer = api.post(
            "/api/v1/customers", json={"id": f"keyed-{next(_ids)}", "subscriptionParams": {"planId": plan_id}}
        )
    assert (answer.status_code == 200) == (outcome == "provisioned"), answer.text
    assert _last_used(plan, fresh) is not None


def test_the_audit_log_names_the_key_that_provisioned(plan: LiveServer) -> None:
    named = plan.key()
    customer_id = f"keyed-{next(_ids)}"
    with plan.http(named) as api:
        body = {"id": customer_id, "subscriptionParams": {"planId": "keyed-plan"}}
        api.post("/api/v1/customers", json=body).raise_for_status()
    with plan.http() as api:
        entries = api.get("/api/v1/audit-log", params={"limit": 100}).json()["data"]
    mine = [e for e in entries if e["entityId"] == customer_id and e["entityType"] == "customers"]
    assert len(mine) == 1
    assert named.startswith(mine[0]["actor"]), mine[0]


@pytest.mark.parametrize("keyed", [True, False])
def test_a_body_of_the_wrong_shape_is_refused_as_a_declared_body_is(plan: LiveServer, keyed: bool) -> None:
    """The provisioning body is read by `http.body.DeclaredBody` and validated in the use case's thread, not
    by FastAPI: every refusal of its shape (none, no or another content type, JSON FastAPI cannot parse,
    JSON that is not an object) is still the one `POST /api/v1/subscriptions` (a body FastAPI reads) gives,
    in the same order against the key (JSON that does not parse is refused before the key is looked at)."""
    sent: dict[str, tuple[bytes, dict[str, str]]] = {
        "empty": (b"", {"Content-Type": "application/json"}),
        "no content type": (b'{"id": "x"}', {}),
        "text": (b'{"id": "x"}', {"Content-Type": "text/plain"}),
        "malformed": (b'{"id": ', {"Content-Type": "application/json"}),
        "null": (b"null", {"Content-Type": "application/json"}),
        "list": (b"[1, 2]", {"Content-Type": "application/json; charset=utf-8"}),
        "string": (b'"x"', {"Content-Type": "application/problem+json"}),
        # Found by the fuzz test: errors of `json.loads` other than a JSONDecodeError are refused too.
        "not UTF-8": (b"\x83\x00{}", {"Content-Type": "application/json"}),
        "nested too deep": (b"[" * 100_000 + b"]" * 100_000, {"Content-Type": "application/json"}),
    }
    key = {"X-API-KEY": plan.server_key} if keyed else {}
    before = _customer_ids(plan)
    answers = {}
    with httpx.Client(base_url=plan.base_url, timeout=30) as http:
        for name, (content, headers) in sent.items():
            provisioned = _answer(http.post("/api/v1/customers", content=content, headers={**headers, **key}))
            subscribed = _answer(http.post("/api/v1/subscriptions", content=content, headers={**headers, **key}))
            answers[name] = (provisioned, subscribed)
    for name, (provisioned, subscribed) in answers.items():
        assert provisioned == subscribed, name
    unparsed = {"malformed", "not UTF-8", "nested too deep"}  # refused before the key is looked at
    expected = {name: 400 if keyed or name in unparsed else 401 for name in sent}
    assert {name: pair[0][0] for name, pair in answers.items()} == expected
    assert _customer_ids(plan) == before
