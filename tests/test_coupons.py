from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import stigg
from sqlalchemy import text

from tests.conftest import LiveServer
from tests.support.clock import TestClock


def _body(**overrides: Any) -> dict[str, Any]:
    """A create body as the official client sends it: every key present, the unused ones null."""
    body: dict[str, Any] = {
        "id": "c-1",
        "name": "Launch",
        "description": None,
        "durationInMonths": None,
        "metadata": None,
        "percentOff": 10,
        "amountsOff": None,
    }
    body.update(overrides)
    return body


def test_percentage_coupon_lifecycle_through_official_client(client: stigg.Stigg) -> None:
    created = client.v1.coupons.create(
        id="launch-20",
        name="Launch 20%",
        description="First three months",
        duration_in_months=3,
        metadata={"campaign": "launch", "owner": "growth"},
        percent_off=20,
        amounts_off=None,
    ).data
    assert created.id == "launch-20"
    assert created.name == "Launch 20%"
    assert created.description == "First three months"
    assert created.type == "PERCENTAGE"
    assert created.status == "ACTIVE"
    assert created.source == "STIGG"
    assert created.percent_off == 20
    assert created.amounts_off is None
    assert created.duration_in_months == 3
    assert created.metadata == {"campaign": "launch", "owner": "growth"}
    assert created.created_at.tzinfo is not None
    assert created.updated_at >= created.created_at

    fetched = client.v1.coupons.retrieve("launch-20").data
    assert fetched.model_dump() == created.model_dump()

    renamed = client.v1.coupons.update_coupon("launch-20", name="Launch twenty").data
    assert renamed.name == "Launch twenty"
    assert renamed.description == "First three months"  # untouched when absent
    assert renamed.metadata == {"campaign": "launch", "owner": "growth"}
    assert renamed.percent_off == 20
    assert renamed.created_at == created.created_at

    replaced = client.v1.coupons.update_coupon("launch-20", description=None, metadata={"campaign": "spring"}).data
    assert replaced.name == "Launch twenty"
    assert replaced.description is None
    assert replaced.metadata == {"campaign": "spring"}  # replaced wholesale, not merged
    assert client.v1.coupons.update_coupon("launch-20", metadata=None).data.metadata == {}

    archived = client.v1.coupons.archive_coupon("launch-20").data
    assert archived.status == "ARCHIVED"
    again = client.v1.coupons.archive_coupon("launch-20").data  # idempotent
    assert again.status == "ARCHIVED"
    assert again.updated_at == archived.updated_at
    still = client.v1.coupons.retrieve("launch-20").data
    assert still.status == "ARCHIVED"
    assert still.name == "Launch twenty"
    assert still.percent_off == 20


def test_fixed_coupon_keeps_amounts_exact(server: LiveServer, client: stigg.Stigg) -> None:
    created = client.v1.coupons.create(
        id="ten-off",
        name="Ten off",
        description=None,
        duration_in_months=None,
        metadata=None,
        percent_off=None,
        amounts_off=[
            {"amount": 10.1, "currency": "usd"},
            {"amount": 9.99, "currency": "eur"},
            {"amount": 1500, "currency": "jpy"},
        ],
    ).data
    assert created.type == "FIXED"
    assert created.percent_off is None
    assert created.duration_in_months is None  # forever
    assert created.metadata == {}
    assert [(a.currency, a.amount) for a in created.amounts_off or []] == [("usd", 10.1), ("eur", 9.99), ("jpy", 1500)]

    # Stored as decimal text, not through a float: what was sent is what is kept.
    with server.db.read() as s:
        stored = s.execute(text("SELECT amounts_off FROM coupons WHERE ref_id = 'ten-off'")).scalar_one()
    stored = stored if isinstance(stored, list) else __import__("json").loads(stored)
    assert [Decimal(a["amount"]) for a in stored] == [Decimal("10.1"), Decimal("9.99"), Decimal("1500")]

    with server.http() as api:
        raw = api.get("/api/v1/coupons/ten-off").json()["data"]
    assert raw["amountsOff"] == [
        {"amount": 10.1, "currency": "usd"},
        {"amount": 9.99, "currency": "eur"},
        {"amount": 1500, "currency": "jpy"},
    ]
    assert raw["percentOff"] is None
    assert raw["status"] == "ACTIVE"
    assert raw["type"] == "FIXED"
    assert raw["source"] == "STIGG"

    # The discount itself cannot be edited: only name, description and metadata. An attempt is refused,
    # naming the field, and changes nothing (not even the name sent with it).
    with server.http() as api:
        r = api.patch("/api/v1/coupons/ten-off", json={"percentOff": 50, "amountsOff": None, "name": "Renamed"})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "UNKNOWN_FIELD"
        assert {d["field"] for d in r.json()["error"]["details"]} == {"percentOff", "amountsOff"}
        assert api.get("/api/v1/coupons/ten-off").json()["data"]["name"] != "Renamed"
        r = api.patch("/api/v1/coupons/ten-off", json={"name": "Renamed"})
        assert r.status_code == 200
        assert r.json()["data"]["amountsOff"] == raw["amountsOff"]
        assert r.json()["data"]["percentOff"] is None
        assert r.json()["data"]["name"] == "Renamed"


def test_create_accepts_absent_optional_keys(api: httpx.Client) -> None:
    r = api.post("/api/v1/coupons", json={"id": "minimal", "name": "Minimal", "percentOff": 12.5})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["percentOff"] == 12.5
    assert data["type"] == "PERCENTAGE"
    assert data["description"] is None
    assert data["durationInMonths"] is None
    assert data["metadata"] == {}
    r = api.post("/api/v1/coupons", json={"id": "hundred", "name": "Free", "percentOff": 100, "durationInMonths": 1})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["percentOff"] == 100
    assert r.json()["data"]["durationInMonths"] == 1


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"percentOff": None, "amountsOff": None}, "exactly one"),
        ({"percentOff": 10, "amountsOff": [{"amount": 5, "currency": "usd"}]}, "exactly one"),
        ({"percentOff": None, "amountsOff": []}, "at least one"),
        ({"percentOff": 0}, "percentOff"),
        ({"percentOff": -5}, "percentOff"),
        ({"percentOff": 100.01}, "percentOff"),
        ({"percentOff": 1e-20}, "percentOff"),
        ({"percentOff": 12.345}, "at most 2 decimal places"),
        ({"percentOff": "NaN"}, "percentOff"),
        ({"percentOff": "Infinity"}, "percentOff"),
        ({"percentOff": "ten"}, "percentOff"),
        ({"percentOff": True}, ""),
        ({"percentOff": None, "amountsOff": [{"amount": 0, "currency": "usd"}]}, "greater than 0"),
        ({"percentOff": None, "amountsOff": [{"amount": -1, "currency": "usd"}]}, "greater than 0"),
        ({"percentOff": None, "amountsOff": [{"amount": 1e-20, "currency": "usd"}]}, "greater than 0"),
        ({"percentOff": None, "amountsOff": [{"amount": 1e30, "currency": "usd"}]}, "too large"),
        ({"percentOff": None, "amountsOff": [{"amount": 1.005, "currency": "usd"}]}, "decimal place"),
        ({"percentOff": None, "amountsOff": [{"amount": 10.5, "currency": "jpy"}]}, "decimal place"),
        (
            {"percentOff": None, "amountsOff": [{"amount": 5, "currency": "usd"}, {"amount": 6, "currency": "usd"}]},
            "twice",
        ),
        ({"percentOff": None, "amountsOff": [{"amount": 5, "currency": "USD"}]}, "currency"),
        ({"percentOff": None, "amountsOff": [{"amount": 5, "currency": "xyz"}]}, "currency"),
        ({"percentOff": None, "amountsOff": [{"amount": 5}]}, "currency"),
        ({"percentOff": None, "amountsOff": [{"currency": "usd"}]}, "amount"),
        ({"percentOff": None, "amountsOff": {"amount": 5, "currency": "usd"}}, "amountsOff"),
        ({"durationInMonths": 0}, "durationInMonths"),
        ({"durationInMonths": -1}, "durationInMonths"),
        ({"durationInMonths": 1.5}, "durationInMonths"),
        ({"durationInMonths": 10**20}, "durationInMonths"),
        ({"durationInMonths": True}, "durationInMonths"),
        ({"durationInMonths": "3"}, "durationInMonths"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"id": ""}, "id"),
        ({"id": "a\x00b"}, "id"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"metadata": ["x"]}, "metadata"),
        ({"description": "x\x00"}, "description"),
    ],
)
def test_invalid_coupons_are_400_and_write_nothing(api: httpx.Client, overrides: dict[str, Any], fragment: str) -> None:
    r = api.post("/api/v1/coupons", json=_body(**overrides))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert fragment in error["message"], error
    assert api.get("/api/v1/coupons").json()["data"] == []


def test_malformed_bodies_are_400(api: httpx.Client) -> None:
    for content in (b"", b"{", b"[]", b"null", b'"x"'):
        r = api.post("/api/v1/coupons", content=content, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (content, r.status_code, r.text)
        assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
    missing_id = dict(_body())
    del missing_id["id"]
    assert api.post("/api/v1/coupons", json=missing_id).status_code == 400
    api.post("/api/v1/coupons", json=_body()).raise_for_status()
    for patch in ({"name": ""}, {"metadata": "x"}, {"description": 5}):
        r = api.patch("/api/v1/coupons/c-1", json=patch)
        assert r.status_code == 400, (patch, r.text)
    assert api.get("/api/v1/coupons/c-1").json()["data"]["name"] == "Launch"


def test_conflict_not_found_and_archived_rules(api: httpx.Client, client: stigg.Stigg) -> None:
    assert api.post("/api/v1/coupons", json=_body()).status_code == 200
    dup = api.post("/api/v1/coupons", json=_body(name="Other", percentOff=50))
    assert dup.status_code == 409
    assert dup.headers["x-should-retry"] == "false"
    assert dup.json()["error"]["code"] == "ALREADY_EXISTS"
    assert api.get("/api/v1/coupons/c-1").json()["data"]["percentOff"] == 10

    missing = api.get("/api/v1/coupons/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "NOT_FOUND", "message": "coupon 'nope' was not found"}}
    assert api.patch("/api/v1/coupons/nope", json={"name": "x"}).status_code == 404
    assert api.post("/api/v1/coupons/nope/archive").status_code == 404
    with pytest.raises(stigg.NotFoundError):
        client.v1.coupons.retrieve("nope")
    # Ids no coupon can have (PostgreSQL text cannot even hold NUL) are a client error, never a 500.
    for odd in ("/api/v1/coupons/%00", "/api/v1/coupons/a%00b/archive"):
        r = api.post(odd) if odd.endswith("archive") else api.get(odd)
        assert r.status_code in (400, 404), (odd, r.text)
        assert r.json()["error"]["code"] in ("INVALID_ARGUMENT", "NOT_FOUND")
    r = api.get("/api/v1/coupons", params={"id": "\x00"})
    assert r.status_code in (200, 400), r.text
    assert r.status_code == 400 or r.json()["data"] == []

    # The client posts archive with a JSON content type and no body.
    archived = api.post("/api/v1/coupons/c-1/archive", headers={"Content-Type": "application/json"})
    assert archived.status_code == 200
    assert archived.json()["data"]["status"] == "ARCHIVED"
    # An archived coupon is retired: it cannot be edited, and its id stays taken.
    edit = api.patch("/api/v1/coupons/c-1", json={"name": "Back"})
    assert edit.status_code == 409
    assert edit.json()["error"]["code"] == "FAILED_PRECONDITION"
    assert api.post("/api/v1/coupons", json=_body()).status_code == 409


def test_list_filters_and_pagination(client: stigg.Stigg, api: httpx.Client, test_clock: TestClock) -> None:
    start = test_clock.now()
    for i in range(6):
        if i % 2:
            client.v1.coupons.create(
                id=f"c-{i}",
                name=f"C{i}",
                description=None,
                duration_in_months=None,
                metadata=None,
                percent_off=None,
                amounts_off=[{"amount": i, "currency": "usd"}],
            )
        else:
            client.v1.coupons.create(
                id=f"c-{i}",
                name=f"C{i}",
                description=None,
                duration_in_months=i + 1,
                metadata=None,
                percent_off=i + 5,
                amounts_off=None,
            )
        test_clock.advance(timedelta(hours=1))
    client.v1.coupons.archive_coupon("c-4")
    client.v1.coupons.archive_coupon("c-5")

    everything = client.v1.coupons.list(limit=4)
    assert [c.id for c in everything.data] == ["c-0", "c-1", "c-2", "c-3"]
    assert [c.id for c in everything] == [f"c-{i}" for i in range(6)]  # archived ones included
    assert everything.data[1].amounts_off is not None and everything.data[1].amounts_off[0].amount == 1

    assert [c.id for c in client.v1.coupons.list(type="FIXED")] == ["c-1", "c-3", "c-5"]
    assert [c.id for c in client.v1.coupons.list(type="PERCENTAGE")] == ["c-0", "c-2", "c-4"]
    assert [c.id for c in client.v1.coupons.list(status=["ARCHIVED"])] == ["c-4", "c-5"]
    assert [c.id for c in client.v1.coupons.list(status=["ACTIVE", "ARCHIVED"])] == [f"c-{i}" for i in range(6)]
    assert [c.id for c in client.v1.coupons.list(status=["ACTIVE"], type="FIXED")] == ["c-1", "c-3"]
    assert [c.id for c in client.v1.coupons.list(id="c-2")] == ["c-2"]
    assert [c.id for c in client.v1.coupons.list(id="nope")] == []

    since = start + timedelta(hours=2)
    assert [c.id for c in client.v1.coupons.list(created_at={"gte": since})] == ["c-2", "c-3", "c-4", "c-5"]
    assert [c.id for c in client.v1.coupons.list(created_at={"gt": since, "lt": start + timedelta(hours=4)})] == ["c-3"]
    # Naive timestamps mean UTC, as the client sends them.
    naive = since.astimezone(UTC).replace(tzinfo=None)
    assert [c.id for c in client.v1.coupons.list(created_at={"lte": naive})] == ["c-0", "c-1", "c-2"]

    page = client.v1.coupons.list(limit=2, after=everything.pagination.next if everything.pagination else None)
    assert [c.id for c in page.data] == ["c-4", "c-5"]
    assert page.pagination is not None and page.pagination.next is None

    for params in ({"type": "FIXED,PERCENTAGE"}, {"type": "fixed"}, {"status": "ACTIVE,GONE"}, {"limit": 0}):
        r = api.get("/api/v1/coupons", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert api.get("/api/v1/coupons", params={"createdAt[gte]": "yesterday"}).status_code == 400
    assert api.get("/api/v1/coupons", params={"after": "garbage!"}).status_code == 400


def test_ids_with_slashes_and_spaces_round_trip(client: stigg.Stigg) -> None:
    client.v1.coupons.create(
        id="promo/spring 2026",
        name="Spring",
        description=None,
        duration_in_months=None,
        metadata=None,
        percent_off=15,
        amounts_off=None,
    )
    assert client.v1.coupons.retrieve("promo/spring 2026").data.id == "promo/spring 2026"
    assert client.v1.coupons.update_coupon("promo/spring 2026", name="Spring!").data.name == "Spring!"
    assert client.v1.coupons.archive_coupon("promo/spring 2026").data.status == "ARCHIVED"


def test_created_at_is_the_clock(client: stigg.Stigg, test_clock: TestClock) -> None:
    test_clock.set(datetime(2026, 3, 1, 9, 30, tzinfo=UTC))
    c = client.v1.coupons.create(
        id="clocked",
        name="Clocked",
        description=None,
        duration_in_months=None,
        metadata=None,
        percent_off=1,
        amounts_off=None,
    ).data
    assert c.created_at == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    test_clock.advance(timedelta(days=1))
    assert client.v1.coupons.archive_coupon("clocked").data.updated_at == datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
