"""Issue 12: a large body (a batch of events) is validated on the thread pool, so the event loop keeps
answering other requests meanwhile; a small one inline. Either way the answer is the same."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import model_validator

from entitle.events.schemas import EventsReport
from entitle.http.body import OFF_LOOP_BYTES, json_body
from entitle.http.errors import install_error_handlers

validated_on: list[int] = []


class RecordedReport(EventsReport):
    @model_validator(mode="after")
    def _record_thread(self) -> RecordedReport:
        validated_on.append(threading.get_ident())
        return self


def _events(count: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"customerId": f"c{n}", "eventName": "e", "idempotencyKey": f"k{n}", "dimensions": {"tokens": n}, **extra}
        for n in range(count)
    ]


SMALL = json.dumps({"events": _events(1)}).encode()
LARGE = json.dumps({"events": _events(1000)}).encode()


@pytest.fixture(scope="module")
def app() -> Iterator[TestClient]:
    application = FastAPI()
    install_error_handlers(application)

    @application.post("/events")
    async def report(body: Annotated[RecordedReport, Depends(json_body(RecordedReport))]) -> dict[str, Any]:
        return {"loop": threading.get_ident(), "validatedOn": validated_on[-1], "count": len(body.events)}

    with TestClient(application) as client:
        yield client


def test_the_bodies_measured_are_on_either_side_of_the_threshold() -> None:
    assert len(SMALL) <= OFF_LOOP_BYTES < len(LARGE)


def test_a_large_body_is_validated_off_the_event_loop_and_a_small_one_on_it(app: TestClient) -> None:
    large = app.post("/events", content=LARGE).json()
    assert large["count"] == 1000
    assert large["validatedOn"] != large["loop"]
    small = app.post("/events", content=SMALL).json()
    assert small["count"] == 1
    assert small["validatedOn"] == small["loop"]


def test_a_bad_large_body_answers_as_a_bad_small_one(app: TestClient) -> None:
    def bad(count: int) -> bytes:
        events = _events(count)
        del events[0]["idempotencyKey"]
        events[-1]["dimensions"] = {"x": {"nested": 1}}
        return json.dumps({"events": events}).encode()

    small, large = app.post("/events", content=bad(2)), app.post("/events", content=bad(1000))
    assert len(bad(1000)) > OFF_LOOP_BYTES
    assert small.status_code == large.status_code == 400
    assert small.json()["error"]["details"][0]["field"] == "events.0.idempotencyKey"
    same_as_small = large.text.replace("events.999.", "events.1.").replace("events[999]", "events[1]")
    assert json.loads(same_as_small) == small.json()
