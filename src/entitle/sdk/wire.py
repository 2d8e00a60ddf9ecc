"""Requests and responses of the server's API, independent of sync or async sending.

Each public call is described as a `Call` (method, path, query, body); the sync and async clients
only differ in how they send it. Shapes are the server's (Stigg REST v1 and our extensions).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from entitle.sdk.credits import CreditState
from entitle.sdk.state import to_decimal
from entitle.sdk.types import (
    CreditBalance,
    CreditReservation,
    EntitleConnectionError,
    EntitleError,
    ReportedUsage,
    Source,
)

USER_KEYS = frozenset({"metadata", "dimensions", "invoiceCustomFields", "billingInformation"})
_CAMEL = re.compile(r"_([a-z0-9])")

#: The server accepts at most this many events per request.
MAX_EVENTS_PER_REQUEST = 5000


def camel(name: str) -> str:
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


def camelize(value: Any) -> Any:
    """snake_case keys to camelCase, recursively, except inside user-keyed maps (metadata...)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = camel(k) if isinstance(k, str) else k
            out[key] = v if key in USER_KEYS else camelize(v)
        return out
    if isinstance(value, list | tuple):
        return [camelize(v) for v in value]
    return jsonable(value)


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def segment(value: str) -> str:
    """One path segment; `/` in an id is sent as %2F (the server keeps it one segment)."""
    return quote(value, safe="")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    retry: bool = False  # safe to resend on a transient failure (reads, idempotent writes)


def entitlements_call(customer_id: str, resource_id: str | None) -> Call:
    params = {"resourceId": resource_id} if resource_id is not None else {}
    return Call("GET", f"/api/v1/customers/{segment(customer_id)}/entitlements", params, retry=True)


def feature_check_call(
    customer_id: str,
    feature_id: str,
    resource_id: str | None,
    requested_usage: Decimal | None,
    requested_values: tuple[str, ...] | None,
) -> Call:
    """The FEATURE check (`GET .../entitlements/check?featureId=`), for what the cache does not decide."""
    params: dict[str, Any] = {"featureId": feature_id}
    if resource_id is not None:
        params["resourceId"] = resource_id
    if requested_usage is not None:
        params["requestedUsage"] = jsonable(requested_usage)
    if requested_values is not None:
        params["requestedValues"] = ",".join(requested_values)
    return Call("GET", f"/api/v1/customers/{segment(customer_id)}/entitlements/check", params, retry=True)


def provision_customer_call(customer_id: str, fields: Mapping[str, Any]) -> Call:
    body = camelize({k: v for k, v in fields.items() if v is not None})
    body["id"] = customer_id
    return Call("POST", "/api/v1/customers", body=body)


def provision_subscription_call(customer_id: str, plan_id: str, fields: Mapping[str, Any]) -> Call:
    body = camelize({k: v for k, v in fields.items() if v is not None})
    body.update(customerId=customer_id, planId=plan_id)
    return Call("POST", "/api/v1/subscriptions", body=body)


def usage_call(
    customer_id: str,
    feature_id: str,
    value: Decimal | int | float,
    *,
    update_behavior: str,
    resource_id: str | None,
    idempotency_key: str | None,
    created_at: datetime | None,
    dimensions: Mapping[str, Any] | None,
) -> Call:
    usage: dict[str, Any] = {
        "customerId": customer_id,
        "featureId": feature_id,
        "value": jsonable(to_decimal(value)),
        "updateBehavior": update_behavior,
        # Always keyed, so a retry after a lost response is counted once by the server.
        "idempotencyKey": idempotency_key or f"sdk-{uuid.uuid4().hex}",
    }
    if resource_id is not None:
        usage["resourceId"] = resource_id
    if created_at is not None:
        usage["createdAt"] = created_at.isoformat()
    if dimensions:
        usage["dimensions"] = dict(dimensions)
    return Call("POST", "/api/v2/usage", body={"usages": [usage]}, retry=True)


def paywall_call(
    product_id: str | None, customer_id: str | None, resource_id: str | None, billing_country_code: str | None
) -> Call:
    params = {
        k: v
        for k, v in {
            "productId": product_id,
            "customerId": customer_id,
            "resourceId": resource_id,
            "billingCountryCode": billing_country_code,
        }.items()
        if v is not None
    }
    return Call("GET", "/api/v1/paywall", params, retry=True)


def events_call(events: list[dict[str, Any]]) -> Call:
    return Call("POST", "/api/v1/events", body={"events": events}, retry=True)


def make_event(
    customer_id: str,
    event_name: str,
    *,
    dimensions: Mapping[str, Any] | None,
    resource_id: str | None,
    idempotency_key: str | None,
    timestamp: datetime | None,
) -> dict[str, Any]:
    """Validated here, so a bad event fails at `report_event` and never poisons a whole batch."""
    if not customer_id or not event_name:
        raise ValueError("customer_id and event_name are required")
    event: dict[str, Any] = {
        "customerId": customer_id,
        "eventName": event_name,
        "idempotencyKey": idempotency_key or f"sdk-{uuid.uuid4().hex}",
    }
    if dimensions:
        for k, v in dimensions.items():
            if not isinstance(k, str) or not isinstance(v, str | bool | int | float):
                raise ValueError(f"dimension {k!r}: values must be str, bool or number")
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"dimension {k!r}: {v} is not a number JSON can carry")
        event["dimensions"] = dict(dimensions)
    if resource_id is not None:
        event["resourceId"] = resource_id
    if timestamp is not None:
        event["timestamp"] = timestamp.isoformat()
    return event


# --- responses ----------------------------------------------------------------------------------


def is_transient_status(status: int) -> bool:
    return status >= 500 or status == 429


def error_of(response: httpx.Response) -> EntitleError:
    code = message = None
    body: Any = None
    try:
        body = response.json()
        err = body.get("error") or {}
        code, message = err.get("code"), err.get("message")
    except (ValueError, AttributeError):
        body = response.text[:1000]
    text = f"{response.request.method} {response.request.url.path}: {response.status_code} {code or ''} {message or ''}"
    kind = EntitleConnectionError if is_transient_status(response.status_code) else EntitleError
    return kind(text.strip(), status=response.status_code, code=code, body=body, message=message)


def data_of(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise error_of(response)
    return response.json()["data"]


def _when(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def reported_usage(data: Mapping[str, Any]) -> ReportedUsage:
    usage = data["usages"][0]
    current = usage.get("currentUsage")
    return ReportedUsage(
        id=usage["id"],
        customer_id=usage["customerId"],
        feature_id=usage["featureId"],
        resource_id=usage.get("resourceId"),
        value=to_decimal(usage["value"]),
        current_usage=None if current is None else to_decimal(current),
        usage_period_start=_when(usage.get("usagePeriodStart")),
        usage_period_end=_when(usage.get("usagePeriodEnd")),
        next_reset_date=_when(usage.get("nextResetDate")),
    )


# --- credits ------------------------------------------------------------------------------------


def credit_check_call(
    customer_id: str,
    currency_id: str,
    resource_id: str | None,
    *,
    reserve_amount: Decimal | int | float | None = None,
    reservation_id: str | None = None,
    ttl_seconds: int | None = None,
) -> Call:
    """The CREDIT check (`GET .../entitlements/check?currencyId=`); with `reserve_amount`, it also holds
    the amount (idempotent per reservation id, so safe to resend)."""
    params: dict[str, Any] = {"currencyId": currency_id}
    if resource_id is not None:
        params["resourceId"] = resource_id
    if reserve_amount is not None:
        params["reserveAmount"] = jsonable(to_decimal(reserve_amount))
        params["reservationId"] = reservation_id
        if ttl_seconds is not None:
            params["reservationTtlSeconds"] = ttl_seconds
    return Call("GET", f"/api/v1/customers/{segment(customer_id)}/entitlements/check", params, retry=True)


def consume_call(
    customer_id: str,
    currency_id: str,
    amount: Decimal | int | float,
    idempotency_key: str,
    *,
    resource_id: str | None = None,
    dimensions: Mapping[str, Any] | None = None,
    created_at: datetime | None = None,
) -> Call:
    body: dict[str, Any] = {
        "customerId": customer_id,
        "currencyId": currency_id,
        "amount": jsonable(to_decimal(amount)),
        "idempotencyKey": idempotency_key,
    }
    if resource_id is not None:
        body["resourceId"] = resource_id
    if dimensions is not None:
        body["dimensions"] = dict(dimensions)
    if created_at is not None:
        body["createdAt"] = created_at.isoformat()
    return Call("POST", "/api/v1/credits/consumption", body=body, retry=True)


def release_call(
    reservation_id: str,
    customer_id: str,
    currency_id: str,
    consumed_amount: Decimal | int | float,
    resource_id: str | None = None,
) -> Call:
    body: dict[str, Any] = {
        "customerId": customer_id,
        "currencyId": currency_id,
        "consumedAmount": jsonable(to_decimal(consumed_amount)),
    }
    if resource_id is not None:
        body["resourceId"] = resource_id
    return Call("POST", f"/api/v1/credits/reservations/{segment(reservation_id)}/release", body=body, retry=True)


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def credit_balance(key: tuple[str, str, str | None], state: CreditState, source: Source) -> CreditBalance:
    customer, currency, resource = key
    return CreditBalance(customer, currency, resource, state.usage_limit, state.current_usage, state.reserved, source)


def credit_reservation(
    data: Mapping[str, Any], balance: CreditBalance, release: Mapping[str, Any] | None = None
) -> CreditReservation:
    held: Mapping[str, Any] = release if release is not None else (data.get("reservation") or {})
    consumed = held.get("consumedAmount")
    return CreditReservation(
        is_granted=bool(data.get("isGranted", True)),
        access_denied_reason=data.get("accessDeniedReason"),
        reservation_id=held.get("id"),
        amount=None if held.get("amount") is None else to_decimal(held["amount"]),
        expires_at=_when(held.get("expiresAt")),
        status=held.get("status"),
        consumed_amount=None if consumed is None else to_decimal(consumed),
        balance=balance,
    )
