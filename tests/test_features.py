from __future__ import annotations

import httpx
import stigg

from tests.conftest import LiveServer


def test_feature_lifecycle_through_official_client(client: stigg.Stigg) -> None:
    created = client.v1.features.create_feature(
        id="feature-seats",
        display_name="Seats",
        feature_type="NUMBER",
        meter_type="FLUCTUATING",
        feature_units="seat",
        feature_units_plural="seats",
        metadata={"team": "growth"},
    ).data
    assert created.id == "feature-seats"
    assert created.meter_type == "FLUCTUATING"
    assert created.feature_status == "NEW"
    assert created.metadata == {"team": "growth"}

    fetched = client.v1.features.retrieve_feature("feature-seats").data
    assert fetched.display_name == "Seats"
    assert fetched.created_at == created.created_at

    updated = client.v1.features.update_feature("feature-seats", display_name="Team seats", metadata={}).data
    assert updated.display_name == "Team seats"
    assert updated.metadata == {}
    assert updated.feature_units == "seat"

    archived = client.v1.features.archive_feature("feature-seats").data
    assert archived.id == "feature-seats"
    assert [f.id for f in client.v1.features.list_features()] == []
    client.v1.features.unarchive_feature("feature-seats")
    assert [f.id for f in client.v1.features.list_features()] == ["feature-seats"]


def test_metered_feature_with_meter_and_enum_feature(client: stigg.Stigg) -> None:
    meter = {
        "aggregation": {"function": "SUM", "field": "tokens"},
        "filters": [{"conditions": [{"field": "eventName", "operation": "EQUALS", "value": "completion"}]}],
    }
    f = client.v1.features.create_feature(
        id="feature-tokens", display_name="Tokens", feature_type="NUMBER", meter_type="INCREMENTAL", meter=meter
    ).data
    assert f.meter is not None
    assert f.meter.aggregation.function == "SUM"
    assert f.meter.filters[0].conditions[0].value == "completion"

    e = client.v1.features.create_feature(
        id="feature-region",
        display_name="Region",
        feature_type="ENUM",
        enum_configuration=[{"value": "eu", "display_name": "EU"}, {"value": "us", "display_name": "US"}],
    ).data
    assert [v.value for v in e.enum_configuration or []] == ["eu", "us"]
    assert e.meter_type == "None"


def test_list_filters_and_pagination(client: stigg.Stigg) -> None:
    for i in range(7):
        client.v1.features.create_feature(
            id=f"f-{i}", display_name=f"F{i}", feature_type="BOOLEAN" if i % 2 else "NUMBER"
        )
    page = client.v1.features.list_features(limit=3)
    assert [f.id for f in page.data] == ["f-0", "f-1", "f-2"]
    assert [f.id for f in page] == [f"f-{i}" for i in range(7)]  # auto-pagination follows `next`
    booleans = client.v1.features.list_features(feature_type=["BOOLEAN"])
    assert [f.id for f in booleans] == ["f-1", "f-3", "f-5"]
    assert page.pagination is not None and page.pagination.next
    back = client.v1.features.list_features(limit=2, before=page.pagination.next)  # the cursor of f-2
    assert [f.id for f in back.data] == ["f-0", "f-1"]
    assert back.pagination is not None and back.pagination.prev is None


def test_conflicts_and_errors_use_the_envelope(server: LiveServer, api: httpx.Client) -> None:
    body = {"id": "dup", "displayName": "Dup", "featureType": "BOOLEAN"}
    assert api.post("/api/v1/features", json=body).status_code == 200
    again = api.post("/api/v1/features", json=body)
    assert again.status_code == 409
    assert again.headers["x-should-retry"] == "false"
    assert again.json()["error"]["code"] == "ALREADY_EXISTS"

    missing = api.get("/api/v1/features/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "NOT_FOUND", "message": "feature 'nope' was not found"}}

    bad = api.post("/api/v1/features", json={"id": "x", "displayName": "X", "featureType": "ENUM"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "INVALID_ARGUMENT"

    boolean_metered = api.post(
        "/api/v1/features", json={"id": "y", "displayName": "Y", "featureType": "BOOLEAN", "meterType": "INCREMENTAL"}
    )
    assert boolean_metered.status_code == 400
    assert api.get("/api/v1/features/y").status_code == 404  # nothing was half-written

    bad_filter = api.get("/api/v1/features", params={"featureType": "BOOLEAN,NOPE"})
    assert bad_filter.status_code == 400


def test_ids_with_slashes_and_spaces_round_trip(client: stigg.Stigg) -> None:
    client.v1.features.create_feature(id="team/seats v2", display_name="Odd", feature_type="BOOLEAN")
    assert client.v1.features.retrieve_feature("team/seats v2").data.id == "team/seats v2"
    assert client.v1.features.archive_feature("team/seats v2").data.id == "team/seats v2"


def test_a_misspelt_field_is_refused_by_name_and_nothing_is_written(api: httpx.Client) -> None:
    # Ignored, `displayNme` would create a feature named after its id, as if the request had been honoured.
    resp = api.post("/api/v1/features", json={"id": "typo", "displayNme": "Typo", "featureType": "BOOLEAN"})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "UNKNOWN_FIELD"
    assert error["message"].startswith("displayNme: ")
    assert api.get("/api/v1/features/typo").status_code == 404

    # Nested, the path names where it sits; every unknown field is listed.
    body = {"id": "typo", "displayName": "T", "featureType": "NUMBER", "meter": None, "unitz": "u", "Bad Key": 1}
    resp = api.post("/api/v1/features", json=body)
    assert resp.status_code == 400
    assert {d["field"] for d in resp.json()["error"]["details"]} == {"unitz", "Bad Key"}
    assert api.get("/api/v1/features/typo").status_code == 404
