"""docs/compatibility.md against the official client: every request field of every request type of
`stigg.types.v1` has a row there, and what the table says is what the server does.

- A field marked `refused` (or a value after `refused value:`) is answered 400 UNSUPPORTED_FIELD naming
  its JSON path, on both databases; `supported` and `n/a` fields never are.
- An endpoint in "Endpoints Entitle does not serve" answers 404 or 405.

Later work turns a refusal into an implementation: change the field's `Unsupported[...]` type in its
schema and its row here, and these tests follow.
"""

from __future__ import annotations

import collections.abc
import importlib
import pkgutil
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import httpx
import pytest
import stigg
import stigg.types.v1
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import select
from stigg._utils import PropertyInfo
from typing_extensions import is_typeddict

from entitle.app import create_app
from entitle.http.body import JsonBody
from entitle.subscriptions.models import FutureUpdate
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.test_lifecycle_scenarios import Story
from tests.test_lifecycle_scenarios import story as lifecycle_story

DOC = Path(__file__).resolve().parents[1] / "docs" / "compatibility.md"
HEADERS = ("X-ACCOUNT-ID", "X-ENVIRONMENT-ID")

# -- the client's request types -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientField:
    path: str  # wire names joined by dots: billingInformation.taxIds
    lists: tuple[bool, ...]  # per segment: whether the value there is a list of objects


def _strip(annotation: Any) -> tuple[Any, str | None]:
    """Unwrap Required/NotRequired/Annotated; return the inner type and the wire alias if any."""
    alias = None
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            for extra in annotation.__metadata__:
                if isinstance(extra, PropertyInfo) and extra.alias:
                    alias = extra.alias
            annotation = get_args(annotation)[0]
        elif origin in (typing.Required, typing.NotRequired):
            annotation = get_args(annotation)[0]
        else:
            return annotation, alias


def _typeddicts(annotation: Any) -> tuple[list[type], bool]:
    """The TypedDicts an annotation holds (through unions, lists, Optional), and whether in a list."""
    annotation, _ = _strip(annotation)
    if is_typeddict(annotation):
        return [annotation], False
    found: list[type] = []
    in_list = False
    origin = get_origin(annotation)
    for arg in get_args(annotation):
        inner, listed = _typeddicts(arg)
        found += [t for t in inner if t not in found]
        in_list = in_list or listed or (bool(inner) and origin not in (typing.Union, None) and is_list(origin))
    return found, in_list


def is_list(origin: Any) -> bool:
    return isinstance(origin, type) and issubclass(origin, collections.abc.Iterable) and origin is not dict


def _walk(td: type, prefix: str, lists: tuple[bool, ...], seen: frozenset[type]) -> Iterator[ClientField]:
    for name, annotation in get_type_hints(td, include_extras=True).items():
        inner, alias = _strip(annotation)
        wire = alias or name
        path = f"{prefix}{wire}"
        nested, in_list = _typeddicts(inner)
        here = (*lists, in_list)
        yield ClientField(path, here)
        for sub in nested:
            if sub not in seen:
                yield from _walk(sub, f"{path}.", here, seen | {sub})


def request_types() -> dict[str, dict[str, ClientField]]:
    """`subscription_provision_params` -> {field path: field}, for every request type of the client."""
    out: dict[str, dict[str, ClientField]] = {}
    for info in pkgutil.walk_packages(stigg.types.v1.__path__, f"{stigg.types.v1.__name__}."):
        if not info.name.endswith("_params"):
            continue
        module = importlib.import_module(info.name)
        key = info.name.removeprefix(f"{stigg.types.v1.__name__}.")
        fields: dict[str, ClientField] = {}
        for name, value in vars(module).items():
            if not name.endswith("Params") or name.startswith("_"):
                continue
            members = [value] if is_typeddict(value) else [a for a in get_args(value) if is_typeddict(a)]
            for td in members:
                for f in _walk(td, "", (), frozenset({td})):
                    known = fields.get(f.path)
                    fields[f.path] = f if known is None else ClientField(f.path, tuple(map(max, known.lists, f.lists)))
        if fields:
            out[key] = fields
    return out


CLIENT = request_types()


# -- the table ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    client_type: str
    endpoint: str  # "PATCH /api/v1/subscriptions/{id}"
    field: str
    status: str
    refused_values: tuple[str, ...]


_ROW = re.compile(r"^\| `([^`]+)` \| ([^|]+) \|")


def parse_doc() -> tuple[list[Row], set[str], dict[str, str]]:
    """The served endpoints' rows, the fields every endpoint shares, and the endpoints not served."""
    rows: list[Row] = []
    shared: set[str] = set()
    not_served: dict[str, str] = {}
    section = ""
    endpoint = ""
    client_type: str | None = None
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            section, client_type = line[3:].strip(), None
        elif line.startswith("### "):
            endpoint, client_type = line[4:].strip(), None
        elif line.startswith("Client type: "):
            client_type = line.split("`")[1]
        elif section == "Endpoints Entitle does not serve" and line.startswith("| `"):
            cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
            not_served[cells[1]] = cells[0]
        elif (m := _ROW.match(line)) is not None:
            field, status = m.group(1), m.group(2).strip()
            if endpoint == "Every endpoint":
                shared.add(field)
            elif client_type is not None:
                refused = re.search(r"refused values?: ([A-Z0-9_, ]+)", status)
                values = tuple(v.strip() for v in refused.group(1).split(",")) if refused else ()
                rows.append(Row(client_type, endpoint, field, status, values))
    return rows, shared, not_served


ROWS, SHARED, NOT_SERVED = parse_doc()


def test_every_client_field_has_a_row() -> None:
    """A field the client sends that this table does not list is a field nobody decided about."""
    listed: dict[str, set[str]] = {}
    for row in ROWS:
        listed.setdefault(row.client_type, set()).add(row.field)
    missing = [
        f"{client_type}: {field}"
        for client_type, fields in sorted(CLIENT.items())
        if client_type not in NOT_SERVED
        for field in fields
        if field not in SHARED and field not in listed.get(client_type, set())
    ]
    assert not missing, "fields of the client missing from docs/compatibility.md:\n" + "\n".join(missing)
    stale = [f"{row.client_type}: {row.field}" for row in ROWS if row.field not in CLIENT.get(row.client_type, {})]
    assert not stale, "rows for fields the client does not have:\n" + "\n".join(stale)
    assert not set(NOT_SERVED) - set(CLIENT), "not-served rows name client types that do not exist"
    assert {r.status.split(",")[0] for r in ROWS} <= {"supported", "refused", "n/a"}
    # The statuses the test relies on are there at all (the parser read the table).
    assert sum(r.status == "refused" for r in ROWS) > 50 and sum(r.status == "supported" for r in ROWS) > 300


# -- declared by the routes -------------------------------------------------------------------------------
#
# Request models ignore keys they do not declare. A contract field a route's model did not declare would be
# accepted and dropped whatever this table says, so every field of a served request type must be declared.


def _routes() -> list[APIRoute]:
    found: list[APIRoute] = []

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                found.append(route)
            elif hasattr(route, "original_router"):
                walk(route.original_router.routes)
            elif hasattr(route, "routes"):
                walk(route.routes)

    walk(create_app().router.routes)
    return found


def _route_for(routes: list[APIRoute], endpoint: str) -> APIRoute:
    method, template = endpoint.split(" ")[:2]
    pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
    for route in routes:
        sample = re.sub(r"\{[^}]+\}", "x", route.path)
        if method in route.methods and pattern.match(sample):
            return route
    raise AssertionError(f"no route serves {endpoint}")


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _models(annotation: Any) -> list[Any]:
    """The pydantic models, or an opaque type (dict, Any), an annotation leads to."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _models(get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if annotation is Any or annotation is dict or origin is dict:
        return [dict]
    return [m for arg in get_args(annotation) for m in _models(arg)]


def _declared(model: Any, segments: list[str]) -> bool:
    if model is dict:
        return True  # an opaque object: whatever is below it is taken (or refused) with it
    head, *rest = segments
    for field in model.model_fields.values():
        if field.alias == head:
            return not rest or any(_declared(m, rest) for m in _models(field.annotation))
    return False


def _read_body(route: APIRoute) -> Any:
    """The model of a body read from its raw bytes (`entitle.http.body.json_body`), if the route has one."""
    for dependency in route.dependant.dependencies:
        if isinstance(dependency.call, JsonBody):
            return dependency.call.model
    return None


def test_every_client_field_is_declared_by_its_route() -> None:
    routes = _routes()
    undeclared = []
    for row in ROWS:
        method, template = row.endpoint.split(" ")[:2]
        if f"{{{row.field}}}" in template:
            continue  # a path parameter
        route = _route_for(routes, row.endpoint)
        segments = row.field.split(".")
        if method == "GET" or row.field in _query_names(route.dependant):
            names = _query_names(route.dependant)
            declared = segments[0] in names or any(n.startswith(f"{segments[0]}[") for n in names)
        else:
            body = route.body_field.field_info.annotation if route.body_field is not None else _read_body(route)
            declared = any(_declared(m, segments) for m in _models(body))
        if not declared:
            undeclared.append(f"{row.endpoint}: {row.field}")
    assert not undeclared, "client fields the route would drop unseen:\n" + "\n".join(undeclared)


# -- sending them ---------------------------------------------------------------------------------------


def _request(row: Row, value: Any) -> tuple[str, str, dict[str, Any]]:
    """Method, URL and httpx arguments sending `value` at the row's field (and nothing else)."""
    method, template = row.endpoint.split(" ")[:2]
    url = re.sub(r"\{[^}]+\}", "x", template)
    segments = row.field.split(".")
    if method == "GET":
        name = segments[0] + "".join(f"[{s}]" for s in segments[1:])
        return method, url, {"params": {name: value}}
    return method, url, {"json": _nest(segments, CLIENT[row.client_type][row.field].lists, value)}


def _nest(segments: list[str], lists: tuple[bool, ...], value: Any) -> Any:
    """`{"entitlements": [{"amount": value}]}`: each list-valued segment holds a one-item list."""
    head, *rest = segments
    inner = _nest(rest, lists[1:], value) if rest else value
    return {head: [inner] if lists[0] and rest else inner}


def _indexed(row: Row) -> str:
    """The JSON path the server names for the row's field: `entitlements[0].amount`."""
    lists = CLIENT[row.client_type][row.field].lists if row.endpoint.split(" ")[0] != "GET" else ()
    parts = row.field.split(".")
    listed = [i < len(parts) - 1 and i < len(lists) and lists[i] for i in range(len(parts))]
    return ".".join(part + ("[0]" if is_list else "") for part, is_list in zip(parts, listed, strict=True))


def _refused_at(body: dict[str, Any]) -> list[str]:
    error = body.get("error") or {}
    return [d["field"] for d in error.get("details") or []] if error.get("code") == "UNSUPPORTED_FIELD" else []


def _sends(row: Row) -> list[Any]:
    """What each row is tried with: a refused field with any value, a refused value as such."""
    return ["x"] if row.status == "refused" else list(row.refused_values)


def test_refused_fields_and_values_get_unsupported_field(api: httpx.Client) -> None:
    tried = 0
    for row in ROWS:
        for value in _sends(row):
            method, url, kwargs = _request(row, value)
            answer = api.request(method, url, **kwargs)
            where = f"{row.endpoint} {row.field}={value!r}: {answer.status_code} {answer.text[:300]}"
            assert answer.status_code == 400, where
            body = answer.json()
            assert body["error"]["code"] == "UNSUPPORTED_FIELD", where
            expected = _indexed(row)
            # The field itself, or the refused object it is part of, is named (first in the message).
            assert any(expected == f or expected.startswith((f + ".", f + "[")) for f in _refused_at(body)), where
            assert body["error"]["message"].startswith(_refused_at(body)[0] + ":"), where
            tried += 1
    assert tried > 100


def test_supported_fields_are_never_refused(api: httpx.Client) -> None:
    """A supported (or n/a) field sent alone may be invalid there, but it is never UNSUPPORTED_FIELD."""
    for row in ROWS:
        if row.status == "refused":
            continue
        method, url, kwargs = _request(row, "x")
        answer = api.request(method, url, **kwargs)
        assert not _refused_at(answer.json() if answer.content else {}), f"{row.endpoint} {row.field}: {answer.text}"


def test_endpoints_not_served_answer_404_or_405(api: httpx.Client) -> None:
    for client_type, endpoint in NOT_SERVED.items():
        method, template = endpoint.split(" ")[:2]
        answer = api.request(method, re.sub(r"\{[^}]+\}", "x", template), json={})
        assert answer.status_code in (404, 405), f"{client_type}: {endpoint} answered {answer.status_code}"


# -- a refused field in an otherwise valid request, and the fields wired through ------------------------


@pytest.fixture
def story(server: LiveServer, client: stigg.Stigg, test_clock: TestClock) -> Story:
    """The lifecycle stories' catalog: free, pro (paid, trial) and business plans; ends downgrade to free."""
    build: Any = lifecycle_story.__wrapped__
    return typing.cast(Story, build(server, client, test_clock))


@pytest.mark.parametrize(
    "extra",
    [
        # A price override is honoured; its tiers are not.
        {"priceOverrides": [{"amount": 5, "currency": "usd", "baseCharge": True, "tiers": [{"upTo": 5}]}]},
        {"budget": {"hasSoftLimit": False, "limit": 100}},
        {"minimumSpend": {"amount": 100, "currency": "usd"}},
        {"billingCycleAnchor": "NOW"},
        {"appliedCoupon": {"billingCouponId": "SPRING"}},
        {"billingInformation": {"isBackdated": True}},
        {"salesforceId": "006xx"},
    ],
    ids=lambda extra: next(iter(extra)),
)
def test_a_refused_field_provisions_nothing(story: Story, extra: dict[str, Any]) -> None:
    body = {"customerId": "acme", "planId": "pro", "metadata": {"deal": "q3"}}
    with story.server.http() as api:
        refused = api.post("/api/v1/subscriptions", json={**body, **extra})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "UNSUPPORTED_FIELD"
        assert refused.json()["error"]["message"].startswith(next(iter(extra)))
        assert story.subscriptions("acme") == []
        # The same fields sent as null are no request for anything: the provision goes through.
        nulls = {key: None for key in extra if key not in ("appliedCoupon", "billingInformation", "entitlements")}
        assert api.post("/api/v1/subscriptions", json={**body, **nulls}).status_code == 200
    assert story.subscriptions("acme") == [("pro", "IN_TRIAL")]


def test_a_refused_field_changes_nothing_of_an_update(story: Story) -> None:
    sub = story.client.v1.subscriptions.provision(customer_id="acme", plan_id="pro").data.subscription
    assert sub is not None
    with story.server.http() as api:
        for extra in ({"salesforceId": "006xx"}, {"budget": {"hasSoftLimit": True, "limit": 5}}):
            answer = api.patch(f"/api/v1/subscriptions/{sub.id}", json={"metadata": {"a": "b"}, **extra})
            assert (answer.status_code, answer.json()["error"]["code"]) == (400, "UNSUPPORTED_FIELD")
        assert story.client.v1.subscriptions.retrieve(sub.id).data.metadata == {}
        ok = api.patch(f"/api/v1/subscriptions/{sub.id}", json={"metadata": {"a": "b"}, "budget": None})
        assert ok.status_code == 200 and ok.json()["data"]["metadata"] == {"a": "b"}


def test_preview_prices_per_unit_charges_at_the_unit_quantity(story: Story) -> None:
    c = story.client.v1
    c.plans.create(id="team", display_name="Team", product_id="app")
    c.plans.entitlements.create("team", entitlements=[{"type": "FEATURE", "id": "sso"}])
    per_seat = {
        "billing_model": "PER_UNIT",
        "feature_id": "projects",
        "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": 7, "currency": "usd"}}],
    }
    c.plans.update("team", charges={"pricing_type": "PAID", "pricing_models": [per_seat]})  # type: ignore[list-item]
    c.plans.publish("team", migration_type="NEW_CUSTOMERS")

    def recurring(**extra: Any) -> Decimal:
        invoice = c.subscriptions.preview(customer_id="acme", plan_id="team", **extra).data.recurring_invoice
        assert invoice is not None
        return Decimal(str(invoice.sub_total))

    assert recurring() == 7
    assert recurring(unit_quantity=3) == 21  # what the billing provider is sent for the per-unit charge
    assert recurring(unit_quantity=3, charges=[{"id": "projects", "quantity": 2, "type": "FEATURE"}]) == 14


def test_revoke_entitlements_holds_when_the_end_is_scheduled(story: Story) -> None:
    """cancellationAction REVOKE_ENTITLEMENTS: no move to the free plan when the subscription ends, at
    period end as well as now; a repeated cancellation for the same end says what follows it."""
    story.client.v1.customers.provision(id="beta")
    ids = {}
    for customer in ("acme", "beta"):
        sub = story.client.v1.subscriptions.provision(
            customer_id=customer, plan_id="pro", trial_override_configuration={"is_trial": False}
        ).data.subscription
        assert sub is not None
        ids[customer] = sub.id
    cancel = story.client.v1.subscriptions.cancel
    cancel(ids["acme"], cancellation_action="REVOKE_ENTITLEMENTS")
    cancel(ids["acme"], cancellation_action="DEFAULT")
    cancel(ids["beta"], cancellation_action="DEFAULT")
    ended = cancel(ids["beta"], cancellation_action="REVOKE_ENTITLEMENTS").data
    assert ended.status == "ACTIVE" and ended.end_date is not None
    story.pass_time(timedelta(days=32))
    assert sorted(story.subscriptions("acme")) == [("free", "ACTIVE"), ("pro", "CANCELED")]
    assert story.subscriptions("beta") == [("pro", "CANCELED")]
    assert not story.granted("beta", "projects")


def test_a_downgrade_stored_with_a_field_refused_since_still_applies(story: Story) -> None:
    """A plan change scheduled before a field was refused may hold it: it never had an effect, so the
    change applies without it instead of failing for ever at the end of the period."""
    story.client.v1.subscriptions.provision(
        customer_id="acme", plan_id="business", trial_override_configuration={"is_trial": False}
    )
    assert story.client.v1.subscriptions.provision(customer_id="acme", plan_id="pro").data.is_scheduled
    with story.server.db.transaction() as s:
        (update,) = s.scalars(select(FutureUpdate)).all()
        update.change = {
            **update.change,
            "budget": {"hasSoftLimit": True, "limit": 5},
            "billingCycleAnchor": "UNCHANGED",
            "salesforceId": "006xx",
        }
    story.pass_time(timedelta(days=32))
    assert sorted(story.subscriptions("acme")) == [("business", "CANCELED"), ("pro", "ACTIVE")]


def test_a_stripe_link_names_the_customer_billed(client: stigg.Stigg, api: httpx.Client) -> None:
    """A STRIPE link's syncedEntityId is the Stripe customer the billing adapter bills: the `billingId`."""
    link = {"id": "stripe-main", "vendorIdentifier": "STRIPE", "syncedEntityId": "cus_1"}
    created = api.post("/api/v1/customers", json={"id": "c", "integrations": [link]}).json()["data"]
    assert created["billingId"] == "cus_1"
    client.v1.customers.integrations.update("stripe-main", id="c", synced_entity_id="cus_2")
    assert client.v1.customers.retrieve("c").data.billing_id == "cus_2"
    clash = api.post("/api/v1/customers", json={"id": "d", "billingId": "cus_9", "integrations": [link]})
    assert (clash.status_code, clash.json()["error"]["code"]) == (400, "INVALID_ARGUMENT")
    assert api.get("/api/v1/customers/d").status_code == 404  # nothing written
    other = api.post("/api/v1/customers/c/integrations", json={**link, "id": "hs", "vendorIdentifier": "HUBSPOT"})
    assert (other.status_code, other.json()["error"]["code"]) == (400, "UNSUPPORTED_FIELD")
    assert other.json()["error"]["message"].startswith("vendorIdentifier:")


def test_unsupported_answers_name_every_refused_field(api: httpx.Client) -> None:
    body = {
        "customerId": "nobody",
        "planId": 7,  # also invalid: the refusal is the answer, the details list the refused fields
        "priceOverrides": [{"amount": 1, "tiers": [{"upTo": 1}]}],
        "billingInformation": {"isInvoicePaid": True, "isBackdated": True},
        "charges": [{"type": "FEATURE", "id": "f", "quantity": 1}, {"type": "CREDIT", "id": "c", "quantity": 1}],
    }
    error = api.post("/api/v1/subscriptions", json=body).json()["error"]
    assert error["code"] == "UNSUPPORTED_FIELD"
    assert [d["field"] for d in error["details"]] == [
        "billingInformation.isBackdated",
        "billingInformation.isInvoicePaid",
        "priceOverrides[0].tiers",
    ]
    assert error["message"].startswith("billingInformation.isBackdated: ")
    query = api.get("/api/v1/customers/x/entitlements/check", params={"featureId": "f", "reserveAmount": "5"})
    assert query.json()["error"]["message"].startswith("reserveAmount: ")
    history = api.get("/api/v1/usage/x/history/f", params={"startDate": "2026-01-01T00:00:00Z", "groupBy": "region"})
    assert (history.status_code, history.json()["error"]["code"]) == (400, "UNSUPPORTED_FIELD")
