"""Issue 12: the ingest route runs on the event loop and hands its batch to one worker thread, its server
key remembered as the hot routes remember theirs. Who may report events, and in which order a request is
refused, is what it was: the key before the body, a client key or another environment's never, and a
key revoked by this process not one request later."""

from __future__ import annotations

from typing import Any

import httpx

from entitle.environments.models import KeyKind
from tests.conftest import LiveServer

EVENTS = "/api/v1/events"
NOT_JSON = b"{not json"


def _batch(*keys: str) -> dict[str, Any]:
    return {"events": [{"customerId": "acme", "eventName": "call", "idempotencyKey": key} for key in keys]}


def _code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_the_key_is_refused_before_the_body_is_read_and_a_revoked_one_at_once(
    server: LiveServer, api: httpx.Client
) -> None:
    # A body that would be a 400: the key decides first.
    for headers, expected in (
        ({"X-API-KEY": "nope"}, 401),
        ({"X-API-KEY": server.key(kind=KeyKind.CLIENT)}, 403),
        ({"X-ENVIRONMENT-ID": "production"}, "ENVIRONMENT_MISMATCH"),
        ({}, "INVALID_ARGUMENT"),  # the body's own refusal, once the key holds
    ):
        refused = api.post(EVENTS, content=NOT_JSON, headers={"content-type": "application/json", **headers})
        assert expected in _code(refused), refused.text

    doomed = server.key()
    with server.http(doomed) as http:
        assert http.post(EVENTS, json=_batch("before")).status_code == 200  # remembered from here on
        pk = next(k["id"] for k in api.get("/api/v1/keys").json()["data"] if doomed.startswith(k["prefix"]))
        assert api.post(f"/api/v1/keys/{pk}/revoke").status_code == 200
        assert http.post(EVENTS, json=_batch("after")).status_code == 401
    # Nothing of the refused batch was stored: resent with a live key, its event is new.
    assert api.post(EVENTS, json=_batch("after", "before")).json() == {"data": {"new": 1, "duplicates": 1}}


def test_the_answer_counts_new_events_and_duplicates_in_the_envelope(api: httpx.Client) -> None:
    first = api.post(EVENTS, json=_batch("a", "b", "a"))
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.content == b'{"data":{"new":2,"duplicates":1}}'
    assert api.post(EVENTS, json=_batch("b", "c")).json() == {"data": {"new": 1, "duplicates": 1}}
