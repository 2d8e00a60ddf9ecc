from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from entitle.credits.schemas import CreditCheckRequest
from entitle.entitlements import service
from entitle.entitlements.schemas import CustomerEntitlements, EntitlementResult
from entitle.entitlements.snapshot import Snapshot
from entitle.errors import InvalidArgument
from entitle.http.deps import HotCustomerKey, comma_list
from entitle.http.hot_route import HotRoute
from entitle.http.wire import Envelope

# HotRoute: the parameters below are declared to FastAPI (OpenAPI, the client compatibility test) but
# solved by a plan made once, not inspected again on every request (entitle.http.hot_route).
router = APIRouter(prefix="/api/v1/customers/{customer_id}/entitlements", tags=["entitlements"], route_class=HotRoute)


def snapshot_of(request: Request) -> Snapshot:
    """The app's snapshot (made at start-up); an app served without its lifespan gets one that is never
    fed, hence never live: it keeps nothing and every answer is read afresh."""
    snapshot: Snapshot | None = getattr(request.app.state, "entitlement_snapshot", None)
    if snapshot is None:
        snapshot = request.app.state.entitlement_snapshot = Snapshot()
    return snapshot


def _enveloped_json(body: bytes) -> Response:
    """`{"data": answer}` around an answer the service wrote as `response_model` would (camelCase, nulls
    kept), without validating again what it just built: on these routes that is a large share of a
    request's cost."""
    return Response(content=b'{"data":' + body + b"}", media_type="application/json")


_RESERVATION_TERMS = (
    "reserveAmount",
    "reservationId",
    "reservationTtlSeconds",
    "reservationExpiresAt",
    "reservationMetadata",
)
# A feature check names none of them: compared as one tuple, not gathered into a dict on every check.
_NO_RESERVATION = (None,) * len(_RESERVATION_TERMS)

# Async: a customer the process's snapshot holds is answered on the event loop, with no database and
# no worker thread; the service reads the others in a worker thread.


@router.get("", response_model=Envelope[CustomerEntitlements])
async def list_entitlements(
    request: Request,
    customer_id: str,
    key: HotCustomerKey,
    resource_id: Annotated[str | None, Query(alias="resourceId", max_length=255)] = None,
) -> Response:
    db = request.app.state.db
    return _enveloped_json(
        await service.list_json(db, snapshot_of(request), key.environment_id, customer_id, resource_id)
    )


@router.get("/check", response_model=Envelope[EntitlementResult])
async def check_entitlement(
    request: Request,
    customer_id: str,
    key: HotCustomerKey,
    feature_id: Annotated[str | None, Query(alias="featureId", max_length=255)] = None,
    currency_id: Annotated[str | None, Query(alias="currencyId", max_length=255)] = None,
    requested_usage: Annotated[Decimal | None, Query(alias="requestedUsage", ge=0, le=10**15)] = None,
    requested_values: Annotated[str | None, Query(alias="requestedValues", max_length=10_000)] = None,
    resource_id: Annotated[str | None, Query(alias="resourceId", max_length=255)] = None,
    # Credit reservations (with currencyId only).
    reserve_amount: Annotated[Decimal | None, Query(alias="reserveAmount", allow_inf_nan=False)] = None,
    reservation_id: Annotated[str | None, Query(alias="reservationId", min_length=1, max_length=255)] = None,
    reservation_ttl_seconds: Annotated[int | None, Query(alias="reservationTtlSeconds", ge=1, le=86_400)] = None,
    reservation_expires_at: Annotated[datetime | None, Query(alias="reservationExpiresAt")] = None,
    reservation_metadata: Annotated[str | None, Query(alias="reservationMetadata", max_length=10_000)] = None,
) -> Response:
    if (feature_id is None) == (currency_id is None):
        raise InvalidArgument("pass exactly one of featureId or currencyId")
    if currency_id is not None:
        credit_request = CreditCheckRequest(
            requested_usage=requested_usage,
            reserve_amount=reserve_amount,
            reservation_id=reservation_id,
            reservation_ttl_seconds=reservation_ttl_seconds,
            reservation_expires_at=reservation_expires_at,
            reservation_metadata=reservation_metadata,
            resource_id=resource_id,
        )
        db = request.app.state.db
        return _enveloped_json(
            await service.check_currency(
                db, snapshot_of(request), key.environment_id, customer_id, currency_id, credit_request
            )
        )
    reservation = (
        reserve_amount,
        reservation_id,
        reservation_ttl_seconds,
        reservation_expires_at,
        reservation_metadata,
    )
    if reservation != _NO_RESERVATION:
        sent = next(name for name, value in zip(_RESERVATION_TERMS, reservation, strict=True) if value is not None)
        raise InvalidArgument(f"{sent}: reservations hold credits; check a currencyId, not a featureId")
    assert feature_id is not None
    result = await service.check_json(
        request.app.state.db,
        snapshot_of(request),
        key.environment_id,
        customer_id,
        feature_id,
        requested_usage=requested_usage,
        requested_values=comma_list(requested_values, name="requestedValues"),
        resource_ref=resource_id,
    )
    return _enveloped_json(result)
