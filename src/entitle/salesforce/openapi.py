"""The OpenAPI 3.0 document of the Flow actions, built from the very models their routes parse and answer
with: a field added to `POST /api/v1/subscriptions` (and so to `FlowSubscriptionProvision`) appears here
without an edit, and a field the models refuse (`Unsupported`, `unsupported_values`) is left out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import core_schema

from entitle import __version__
from entitle.http.wire import Envelope, RefusedValues, refuse_value
from entitle.salesforce.rules import REFUSED_MARK, flatten
from entitle.salesforce.schemas import (
    CustomerUpsert,
    FlowCreditGrant,
    FlowCreditGrantOut,
    FlowCustomerOut,
    FlowErrorEnvelope,
    FlowSubscriptionOut,
    FlowSubscriptionProvision,
)

OPENAPI_VERSION = "3.0.3"
PREFIX = "/api/v1/salesforce"
DOCUMENT_PATH = f"{PREFIX}/openapi.json"
SECURITY_SCHEME = "EntitleApiKey"


@dataclass(frozen=True)
class Action:
    operation_id: str
    method: Literal["post", "put"]
    path: str
    summary: str
    description: str
    request: type[BaseModel]
    response: type[BaseModel]
    # Status -> when it is answered, with the error codes a Flow's fault path branches on.
    errors: tuple[tuple[int, str], ...]


_COMMON_ERRORS = (
    (400, "INVALID_ARGUMENT: a field is missing or malformed; UNSUPPORTED_FIELD: a field Entitle refuses."),
    (401, "UNAUTHENTICATED: the Named Credential's X-API-KEY is missing, unknown or revoked."),
)

ACTIONS: tuple[Action, ...] = (
    Action(
        operation_id="upsertCustomer",
        method="put",
        path=f"{PREFIX}/customers/{{customerId}}",
        summary="Create or update an Entitle customer",
        description=(
            "Creates the customer with this id (the Salesforce account id) or, when it exists, updates it with the "
            "fields sent. Repeating it changes nothing more."
        ),
        request=CustomerUpsert,
        response=FlowCustomerOut,
        errors=(
            *_COMMON_ERRORS,
            (409, "CUSTOMER_ARCHIVED: the customer was archived; its id cannot be used again."),
        ),
    ),
    Action(
        operation_id="provisionSubscription",
        method="post",
        path=f"{PREFIX}/subscriptions",
        summary="Provision an Entitle subscription",
        description=(
            "Provisions the subscription (the fields of POST /api/v1/subscriptions), its id derived from the "
            "opportunity id. When a subscription with this id exists it is answered unchanged (created: false), "
            "so a Flow that runs twice provisions once."
        ),
        request=FlowSubscriptionProvision,
        response=FlowSubscriptionOut,
        errors=(
            *_COMMON_ERRORS,
            (
                404,
                "NOT_FOUND: the customer, the plan, an add-on or a feature does not exist; CUSTOMER_ARCHIVED: the "
                "customer was archived (unarchive it first).",
            ),
            (
                409,
                "IDEMPOTENCY_CONFLICT: this id was provisioned for another customer or plan; FAILED_PRECONDITION: "
                "the plan's product is archived or the terms cannot apply; CONFLICT: a concurrent run made it first.",
            ),
            (502, "BILLING_PROVIDER_ERROR: the billing provider refused or did not answer; nothing was kept."),
        ),
    ),
    Action(
        operation_id="createCreditGrant",
        method="post",
        path=f"{PREFIX}/credit-grants",
        summary="Grant credits to an Entitle customer",
        description=(
            "Grants credits (the fields of POST /api/v1/credits/grants), the grant's id derived from the "
            "opportunity line item id. When a grant with this id exists it is answered unchanged (created: false)."
        ),
        request=FlowCreditGrant,
        response=FlowCreditGrantOut,
        errors=(
            *_COMMON_ERRORS,
            (
                404,
                "NOT_FOUND: the customer or the custom currency does not exist; CUSTOMER_ARCHIVED: the customer was "
                "archived (unarchive it first).",
            ),
            (
                409,
                "IDEMPOTENCY_CONFLICT: this grant id was used with other terms; FAILED_PRECONDITION: the currency "
                "is archived; CONFLICT: a concurrent run made it first.",
            ),
        ),
    ),
)


class _FlowJsonSchema(GenerateJsonSchema):
    """pydantic's generator, marking fields the models refuse and leaving out values they refuse."""

    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema) -> JsonSchemaValue:
        if schema["function"]["function"] is refuse_value:
            return {REFUSED_MARK: True}
        return super().function_before_schema(schema)

    def function_after_schema(self, schema: core_schema.AfterValidatorFunctionSchema) -> JsonSchemaValue:
        generated = super().function_after_schema(schema)
        check = schema["function"]["function"]
        return _without_values(generated, check.refused) if isinstance(check, RefusedValues) else generated


def _without_values(schema: JsonSchemaValue, refused: tuple[str, ...]) -> JsonSchemaValue:
    if "enum" in schema:
        return {**schema, "enum": [v for v in schema["enum"] if v not in refused]}
    if "anyOf" in schema:  # a nullable field (`Annotated[Literal[...] | None, unsupported_values(...)]`)
        return {**schema, "anyOf": [_without_values(member, refused) for member in schema["anyOf"]]}
    return schema


def schema_of(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
    generated = model.model_json_schema(by_alias=True, mode=mode, schema_generator=_FlowJsonSchema)
    generated.pop("description", None)  # the model's docstring speaks to Entitle's developers
    return flatten(generated, generated.get("$defs", {}))


def _error_response(description: str) -> dict[str, Any]:
    schema = schema_of(FlowErrorEnvelope, "serialization")
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(action: Action) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": action.operation_id,
        "summary": action.summary,
        "description": action.description,
        "tags": ["salesforce"],
    }
    if "{customerId}" in action.path:
        operation["parameters"] = [
            {
                "name": "customerId",
                "in": "path",
                "required": True,
                "description": "The customer's id (the Salesforce account id).",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        ]
    operation["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": schema_of(action.request, "validation")}},
    }
    answered = schema_of(Envelope[action.response], "serialization")  # type: ignore[name-defined]
    operation["responses"] = {
        "200": {"description": "Done (or found done before).", "content": {"application/json": {"schema": answered}}},
        **{str(status): _error_response(description) for status, description in action.errors},
    }
    return operation


def document(public_url: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document External Services registers (its Named Credential supplies the base URL)."""
    paths: dict[str, dict[str, Any]] = {}
    for action in ACTIONS:
        paths.setdefault(action.path, {})[action.method] = _operation(action)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Entitle Salesforce Flow actions",
            "version": __version__,
            "description": (
                "Provisioning actions for Salesforce Flows (External Services): upsert a customer, provision its "
                "subscription, grant credits. Each is safe to repeat. See docs/salesforce.md."
            ),
        },
        "servers": [{"url": public_url.rstrip("/")}],
        "security": [{SECURITY_SCHEME: []}],
        "paths": paths,
        "components": {"securitySchemes": {SECURITY_SCHEME: {"type": "apiKey", "in": "header", "name": "X-API-KEY"}}},
    }
