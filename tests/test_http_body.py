"""A body validated straight from its bytes (`entitle.http.body`, the events route's parser) answers as
FastAPI's own body parameter does: the same 400 INVALID_ARGUMENT naming the fields, and the body still
documented in OpenAPI (the fuzz tests generate requests from it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from entitle.events.schemas import EventsReport
from entitle.http.body import json_body, openapi_body
from entitle.http.errors import install_error_handlers

GOOD = {"events": [{"customerId": "c", "eventName": "e", "idempotencyKey": "k", "dimensions": {"tokens": 3}}]}


@pytest.fixture(scope="module")
def app() -> Iterator[TestClient]:
    application = FastAPI()
    install_error_handlers(application)

    @application.post("/events", openapi_extra=openapi_body(EventsReport))
    def report(body: Annotated[EventsReport, Depends(json_body(EventsReport))]) -> dict[str, Any]:
        return {"keys": [e.idempotency_key for e in body.events], "tokens": body.events[0].dimensions}

    with TestClient(application) as client:
        yield client


def test_a_valid_body_is_parsed_with_or_without_a_json_content_type(app: TestClient) -> None:
    for content_type in ("application/json", "application/json; charset=utf-8", "application/cloudevents+json", None):
        headers = {"content-type": content_type} if content_type else {}
        response = app.post("/events", content=json.dumps(GOOD), headers=headers)
        assert response.status_code == 200, (content_type, response.text)
        assert response.json() == {"keys": ["k"], "tokens": {"tokens": 3.0}}


@pytest.mark.parametrize(
    ("content", "content_type", "field"),
    [
        (b"", "application/json", ""),
        (b'{"events": [', "application/json", ""),
        (json.dumps(GOOD).encode(), "text/plain", ""),
        (b'{"events": []}', "application/json", "events"),
        (b'{"events": [{"customerId": "c", "eventName": "e"}]}', "application/json", "events.0.idempotencyKey"),
        (
            json.dumps({"events": [{**GOOD["events"][0], "dimensions": {"x": {"nested": 1}}}]}).encode(),
            "application/json",
            "events.0.dimensions.x",
        ),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(app: TestClient, content: bytes, content_type: str, field: str) -> None:
    response = app.post("/events", content=content, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["details"][0]["field"].startswith(field)


def test_the_body_is_documented_with_its_definitions_inlined(app: TestClient) -> None:
    operation = app.get("/openapi.json").json()["paths"]["/events"]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    assert schema["required"] == ["events"]
    event = schema["properties"]["events"]["items"]
    assert set(event["required"]) == {"customerId", "eventName", "idempotencyKey"}
    assert "$ref" not in json.dumps(schema) and "$defs" not in json.dumps(schema)
