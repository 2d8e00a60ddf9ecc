"""Issue 11, item 1: no acknowledged input can make a later read fail.

Hypothesis drives sequences of usage reports, raw events and a provisioning (events sent before it wait
for the customer) with hostile numbers — huge and tiny, at and past the bounds, NaN, infinities, numeric
strings — through the HTTP API, on SQLite and PostgreSQL. Every answer is the one a plain model
predicts (200, or 400/404 refusing the item, never a 5xx), and after every step the customer's check
and list answer 200 with exactly the usage the model counted.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer
from tests.test_usage_trust import build

BIG = Decimal(10) ** 15
_customers = itertools.count()

hostile = st.one_of(
    st.integers(min_value=-2 * 10**15, max_value=2 * 10**15),
    st.integers(min_value=-5, max_value=50),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=-(10**16), max_value=10**16, places=14, allow_nan=False).map(float),
    st.sampled_from([10**15, -(10**15), 10**15 + 1, 9e23, 5e25, 1e30, -1e30, 1e-20, 0.1, 2.5, 0]),
    st.sampled_from(["1e30", "NaN", "Infinity", "-0", "7", "1e3", "x", "1_000"]),
)
operations = st.one_of(
    st.tuples(st.just("report"), st.sampled_from(["calls", "seats"]), st.sampled_from(["DELTA", "SET"]), hostile),
    st.tuples(st.just("event"), st.sampled_from(["tokens", "peak"]), st.just(""), hostile),
    st.tuples(st.just("provision"), st.just(""), st.just(""), st.just(0)),
)


def _kept(number: Decimal) -> Decimal | None:
    """The documented range: within +-10^15, kept to 12 decimal places."""
    if not number.is_finite() or abs(number) > BIG:
        return None
    return number.quantize(Decimal("1e-12")) if number.as_tuple().exponent < -12 else number  # type: ignore[operator]


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


@dataclass
class Tally:
    value: Decimal = Decimal(0)
    samples: int = 0


@dataclass
class Model:
    provisioned: bool = False
    counters: dict[str, Tally] = field(
        default_factory=lambda: {f: Tally() for f in ("calls", "seats", "tokens", "peak")}
    )
    waiting: dict[str, Tally] = field(default_factory=lambda: {f: Tally() for f in ("tokens", "peak")})

    def report(self, feature: str, behavior: str, raw: Any) -> int:
        if isinstance(raw, bool):
            return 400
        number = _decimal(str(raw)) if isinstance(raw, int | float | str) else None
        kept = _kept(number) if number is not None else None
        if kept is None:
            return 400
        if not self.provisioned:
            return 404
        if feature == "calls" and behavior == "DELTA" and kept < 0:
            return 400
        tally = self.counters[feature]
        after = tally.value + kept if behavior == "DELTA" else kept
        if abs(after) > BIG:
            return 400
        tally.value = after
        return 200

    def event(self, feature: str, raw: Any) -> int:
        if isinstance(raw, float) and (raw != raw or raw in (float("inf"), float("-inf"))):
            return 400  # JSON's NaN and infinities are no dimension value
        # A dimension is a string, a bool or a float (a JSON integer arrives as a float).
        read = _decimal(raw) if isinstance(raw, str) else Decimal(str(float(raw)))
        if read is None or not read.is_finite():
            return 200  # not a number: the meter skips it
        kept = _kept(read)
        if kept is None:
            return 400
        tally = (self.counters if self.provisioned else self.waiting)[feature]
        if feature == "tokens":
            if abs(tally.value + kept) > BIG:
                return 400
            tally.value += kept
        else:
            tally.value = kept if tally.samples == 0 else max(tally.value, kept)
        tally.samples += 1
        return 200

    def provision(self) -> None:
        self.provisioned = True
        tokens, peak = self.counters["tokens"], self.counters["peak"]
        tokens.value += self.waiting["tokens"].value
        waited = self.waiting["peak"]
        if waited.samples:
            peak.value = waited.value if peak.samples == 0 else max(peak.value, waited.value)
            peak.samples += waited.samples
        self.waiting = {f: Tally() for f in self.waiting}


def _same(answered: Any, expected: Decimal) -> bool:
    if isinstance(answered, int):
        return Decimal(answered) == expected
    return bool(answered == float(expected))


@pytest.fixture
def built(server: LiveServer, api: httpx.Client) -> LiveServer:
    build(api)
    return server


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(operations, min_size=1, max_size=8))
def test_no_sequence_of_reports_and_events_breaks_a_read(
    built: LiveServer, api: httpx.Client, steps: list[tuple[str, str, str, Any]]
) -> None:
    customer = f"seq-{next(_customers)}"
    model = Model()
    for n, (kind, feature, behavior, raw) in enumerate(steps):
        if kind == "provision":
            if model.provisioned:
                continue
            body = {"id": customer, "subscriptionParams": {"planId": "basic"}}
            assert api.post("/api/v1/customers", json=body).status_code == 200
            model.provision()
        elif kind == "report":
            item = {"customerId": customer, "featureId": feature, "value": raw, "updateBehavior": behavior}
            response = api.post("/api/v2/usage", content=json.dumps({"usages": [item]}), headers=_JSON)
            assert response.status_code == model.report(feature, behavior, raw), (raw, response.text)
        else:
            name, dimension = ("completion", "tokens") if feature == "tokens" else ("sample", "load")
            item = {"customerId": customer, "eventName": name, "idempotencyKey": f"{customer}-{n}"}
            item["dimensions"] = {dimension: raw}
            response = api.post("/api/v1/events", content=json.dumps({"events": [item]}), headers=_JSON)
            assert response.status_code == model.event(feature, raw), (raw, response.text)
        _reads_agree(api, customer, model)


_JSON = {"content-type": "application/json"}


def _reads_agree(api: httpx.Client, customer: str, model: Model) -> None:
    listed = api.get(f"/api/v1/customers/{customer}/entitlements")
    assert listed.status_code == 200, listed.text
    usage = {e["feature"]["id"]: e.get("currentUsage") for e in listed.json()["data"]["entitlements"]}
    for feature, tally in model.counters.items():
        checked = api.get(f"/api/v1/customers/{customer}/entitlements/check", params={"featureId": feature})
        assert checked.status_code == 200, checked.text
        if not model.provisioned:
            assert checked.json()["data"]["accessDeniedReason"] == "CustomerNotFound"
            continue
        assert _same(checked.json()["data"]["currentUsage"], tally.value), (feature, checked.json(), tally)
        assert _same(usage[feature], tally.value), (feature, usage, tally)
