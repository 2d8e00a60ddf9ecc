"""Issue 12: an events batch is validated on a fast path (plain dicts, and without the patterns refusing
control characters when the body holds no backslash, the only way JSON writes one in a string). What it
accepts, and how a refusal reads, must be exactly what `EventsReport` answers for the same bytes."""

from __future__ import annotations

import json
from typing import Any

from fastapi.exceptions import RequestValidationError
from hypothesis import given
from hypothesis import strategies as st

from entitle.events.routes import EventsBody
from entitle.events.schemas import EventsReport, item_of
from entitle.http.body import JsonBody

FAST = EventsBody(EventsReport)
MODELS = JsonBody(EventsReport)
FIELDS = ("customerId", "eventName", "idempotencyKey", "dimensions", "resourceId", "timestamp")

# Mostly printable texts (quotes, backslashes and non-ASCII letters among them), sometimes any text
# (control characters, NUL, empty): mostly valid events, and every kind of refusal.
printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x17F), min_size=1, max_size=4)
texts = st.one_of(printable, printable, printable, st.text(alphabet=st.characters(max_codepoint=0x17F), max_size=3))
values = st.one_of(
    texts,
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.none(),
    st.lists(st.integers(), max_size=1),
)
valid_ish = st.fixed_dictionaries(
    {"customerId": texts, "eventName": texts, "idempotencyKey": texts},
    optional={
        "dimensions": st.one_of(st.none(), st.dictionaries(texts, values, max_size=3)),
        "resourceId": st.one_of(st.none(), texts),
        "timestamp": st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T08:00:00+01:00", "soon", 0, None]),
    },
)
# A field missing, one the models read by its Python name, one they do not know, a wrong type.
odd = st.tuples(valid_ish, st.sampled_from(["missing", "python name", "surplus", "number"])).map(
    lambda pair: {
        "missing": lambda e: {k: v for k, v in e.items() if k != "eventName"},
        "python name": lambda e: {**{k: v for k, v in e.items() if k != "customerId"}, "customer_id": e["customerId"]},
        "surplus": lambda e: {**e, "surplus": 1},
        "number": lambda e: {**e, "idempotencyKey": 7},
    }[pair[1]](pair[0])
)
events = st.one_of(valid_ish, valid_ish, valid_ish, odd)
bodies = st.one_of(
    st.lists(events, min_size=1, max_size=4).map(lambda items: {"events": items}),
    st.sampled_from([{"events": []}, {"events": "none"}, {}, "events"]),
)


def _answer(body: JsonBody[Any], raw: bytes) -> tuple[str, Any]:
    try:
        read = body.validate(raw)
    except RequestValidationError as exc:
        return "refused", exc.errors()
    items = read if isinstance(read, list) else [item_of(e) for e in read.events]
    # As the service reads an item: absent and None alike; True, 1 and 1.0 apart.
    return "accepted", [
        {name: (type(item.get(name)), item.get(name)) for name in FIELDS if name != "dimensions"}
        | {"dimensions": {k: (type(v), v) for k, v in (item.get("dimensions") or {}).items()}}
        for item in items
    ]


@given(bodies, st.booleans())
def test_the_fast_path_accepts_and_refuses_exactly_as_the_models(body: Any, ascii_only: bool) -> None:
    # ensure_ascii: every non-ASCII letter is written as an escape, so the body holds backslashes.
    raw = json.dumps(body, ensure_ascii=ascii_only).encode()
    assert _answer(FAST, raw) == _answer(MODELS, raw)


def test_a_control_character_written_as_an_escape_is_refused_as_before() -> None:
    raw = json.dumps({"events": [{"customerId": "a\u0001", "eventName": "e", "idempotencyKey": "k"}]}).encode()
    verdict, errors = _answer(FAST, raw)
    assert verdict == "refused"
    assert [e["loc"] for e in errors] == [("body", "events", 0, "customerId")]
    assert errors == _answer(MODELS, raw)[1]
