"""The OpenAPI 3.0 document of the Salesforce Flow actions (issue 17): valid OpenAPI 3.0, within what
External Services registers, following the request models, and written by `entitle salesforce openapi`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_spec_validator import validate
from pydantic import BeforeValidator

from entitle.http.wire import Unsupported, WireModel, refuse_value, unsupported_values
from entitle.salesforce.openapi import ACTIONS, document, schema_of
from entitle.salesforce.rules import RecursiveSchema, flatten
from tests.support.cli import invoke

FORBIDDEN = {"oneOf", "anyOf", "allOf", "discriminator", "$ref", "$defs", "const", "prefixItems"}
OPERATIONS = {"upsertCustomer", "provisionSubscription", "createCreditGrant"}


def _keywords(value: Any) -> set[str]:
    """Every key of every object in `value` (property names included: none is named like a keyword)."""
    if isinstance(value, dict):
        return set(value).union(*(_keywords(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_keywords(v) for v in value))
    return set()


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return document("https://entitle.example.com")


def _operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for methods in doc["paths"].values() for op in methods.values()}


def test_the_document_is_valid_openapi_3_0_without_unions_and_lists_the_three_actions(doc: dict[str, Any]) -> None:
    validate(doc)  # openapi-spec-validator picks the 3.0 schema from "openapi"
    assert doc["openapi"].startswith("3.0.")
    assert _keywords(doc) & FORBIDDEN == set()
    assert set(_operations(doc)) == OPERATIONS
    assert doc["components"]["securitySchemes"] == {
        "EntitleApiKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY"}
    }
    assert doc["security"] == [{"EntitleApiKey": []}]
    assert doc["servers"] == [{"url": "https://entitle.example.com"}]


def test_each_action_answers_what_a_flow_writes_back_and_documents_its_error_codes(doc: dict[str, Any]) -> None:
    operations = _operations(doc)
    written_back = {
        "upsertCustomer": {"customerId", "created", "consoleUrl"},
        "provisionSubscription": {"subscriptionId", "customerId", "status", "created", "consoleUrl"},
        "createCreditGrant": {"grantId", "customerId", "amount", "created"},
    }
    for operation_id, fields in written_back.items():
        responses = operations[operation_id]["responses"]
        data = responses["200"]["content"]["application/json"]["schema"]["properties"]["data"]
        assert fields <= set(data["required"]), operation_id
        errors = {status for status in responses if status.startswith("4")}
        assert {"400", "401"} <= errors, operation_id
        for status in errors:
            error = responses[status]["content"]["application/json"]["schema"]["properties"]["error"]
            assert set(error["required"]) == {"code", "message"}
            assert responses[status]["description"].split(":")[0].isupper()  # starts with a stable code
    subscription = operations["provisionSubscription"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"id", "customerId", "planId"} <= set(subscription["required"])
    assert operations["upsertCustomer"]["parameters"][0]["name"] == "customerId"


def test_the_request_schemas_follow_the_models_leaving_out_exactly_the_refused_fields(doc: dict[str, Any]) -> None:
    operations = _operations(doc)
    for action in ACTIONS:
        schema = operations[action.operation_id]["requestBody"]["content"]["application/json"]["schema"]
        refused = {
            field.alias or name
            for name, field in action.request.model_fields.items()
            if any(isinstance(m, BeforeValidator) and m.func is refuse_value for m in field.metadata)
        }
        offered = {field.alias or name for name, field in action.request.model_fields.items()} - refused
        assert set(schema["properties"]) == offered, action.operation_id


def test_a_price_override_offers_its_amount_or_a_credit_rate_and_leaves_out_the_refused_fields(
    doc: dict[str, Any],
) -> None:
    """What a Flow may send as a deal's price: an amount of at least 0, or a credit-priced feature's rate."""
    body = _operations(doc)["provisionSubscription"]["requestBody"]["content"]["application/json"]["schema"]
    item = body["properties"]["priceOverrides"]["items"]
    assert set(item["properties"]) == {"addonId", "featureId", "baseCharge", "amount", "currency", "creditRate"}
    assert item["properties"]["amount"] == {"type": "number", "minimum": 0, "nullable": True}
    rate = item["properties"]["creditRate"]
    assert set(rate["properties"]) == {"amount", "currencyId"} and rate["required"] == ["amount", "currencyId"]
    assert rate["properties"]["amount"]["exclusiveMinimum"] is True


class _Inner(WireModel):
    kind: Annotated[Literal["A", "B", "C"], unsupported_values("B")]


class _Sample(WireModel):
    """A model written the way the API's are, to pin how each marker is rendered."""

    plain: int
    maybe: str | None = None
    refused: Unsupported[list[int]] = None
    refused_then_normalized: Annotated[Unsupported[str], BeforeValidator(lambda v: v or None)] = None
    inner: _Inner | None = None
    inners: list[_Inner] = []
    nullable_kind: Annotated[Literal["X", "Y"] | None, unsupported_values("Y")] = None


def test_refused_fields_and_values_are_left_out_and_unions_become_nullable() -> None:
    schema = schema_of(_Sample, "validation")
    assert set(schema["properties"]) == {"plain", "maybe", "inner", "inners", "nullableKind"}
    assert schema["required"] == ["plain"]
    assert schema["properties"]["maybe"] == {"type": "string", "nullable": True}
    inner = schema["properties"]["inner"]
    assert inner["nullable"] is True and inner["properties"]["kind"]["enum"] == ["A", "C"]
    assert schema["properties"]["inners"]["items"]["properties"]["kind"]["enum"] == ["A", "C"]
    assert schema["properties"]["nullableKind"] == {"enum": ["X"], "type": "string", "nullable": True}


class _Node(WireModel):
    children: list[_Node] = []


def test_a_recursive_model_is_refused_rather_than_written() -> None:
    with pytest.raises(RecursiveSchema, match="_Node -> _Node"):
        schema_of(_Node, "validation")


_LEAVES = st.sampled_from(
    [
        {"type": "string"},
        {"type": "integer", "minimum": 0},
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "boolean"},
        {"const": "ONLY"},
        {"type": "null"},
        {"$ref": "#/$defs/Leaf"},
    ]
)
_SCHEMAS = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda members: {"anyOf": members}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda member: {"allOf": [member]}, inner),
        st.builds(lambda item: {"type": "array", "items": item}, inner),
        st.builds(
            lambda props: {"type": "object", "properties": props, "required": sorted(props)[:1]},
            st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, min_size=1, max_size=3),
        ),
    ),
    max_leaves=12,
)


@given(_SCHEMAS)
def test_any_nesting_of_unions_references_and_intersections_flattens_into_plain_3_0_keywords(
    schema: dict[str, Any],
) -> None:
    defs = {"Leaf": {"type": "object", "properties": {"n": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}}
    flat = flatten(schema, defs)
    assert _keywords(flat) & FORBIDDEN == set()
    assert all(isinstance(v, bool) for k, v in _items(flat) if k in ("exclusiveMinimum", "nullable"))
    members = schema.get("anyOf", [])
    if members and any(m == {"type": "null"} for m in members):
        assert flat.get("nullable") is True
    validate(
        {
            "openapi": "3.0.3",
            "info": {"title": "t", "version": "1"},
            "paths": {},
            "components": {"schemas": {"S": flat}},
        }
    )


def _items(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [*value.items(), *(i for v in value.values() for i in _items(v))]
    if isinstance(value, list):
        return [i for v in value for i in _items(v)]
    return []


def test_the_command_writes_the_document(tmp_path: Path) -> None:
    given_url = invoke("salesforce", "openapi", "--public-url", "https://crm.example.com/", data_dir=tmp_path)
    assert given_url.returncode == 0, given_url.stderr
    assert json.loads(given_url.stdout) == document("https://crm.example.com")
    from_settings = invoke(
        "salesforce", "openapi", data_dir=tmp_path, env={"ENTITLE_PUBLIC_URL": "https://entitle.acme.example"}
    )
    assert json.loads(from_settings.stdout)["servers"] == [{"url": "https://entitle.acme.example"}]
