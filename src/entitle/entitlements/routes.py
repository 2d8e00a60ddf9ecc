from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from entitle.entitlements import service
from entitle.entitlements.schemas import CustomerEntitlements, EntitlementResult
from entitle.entitlements.snapshot import Snapshot
from entitle.errors import InvalidArgument, UnsupportedField
from entitle.http.deps import HotCustomerKey, comma_list
from entitle.http.wire import Envelope, Unsupported

router = APIRouter(prefix="/api/v1/customers/{customer_id}/entitlements", tags=["entitlements"])


def snapshot_of(request: Request) -> Snapshot:
    """The app's snapshot (made at start-up); an app served without its lifespan gets one that is never
    fed, hence never live: it keeps nothing and every answer is read afresh."""
    snapshot: Snapshot | None = getattr(request.app.state, "entitlement_snapshot", None)
    if snapshot is None:
        snapshot = request.app.state.entitlement_snapshot = Snapshot()
    return snapshot


def _enveloped(answer: BaseModel) -> Response:
    """`{"data": answer}` as `response_model` would write it (camelCase, nulls kept), without validating
    again what the service just built: on these routes that is a large share of a request's cost."""
    body = answer.__pydantic_serializer__.to_json(answer, by_alias=True)
    return Response(content=b'{"data":' + body + b"}", media_type="application/json")


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
    return _enveloped(await service.list_for(db, snapshot_of(request), key.environment_id, customer_id, resource_id))


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
    # Credit reservations (credits are not granted yet).
    reserve_amount: Annotated[Unsupported[str], Query(alias="reserveAmount")] = None,
    reservation_id: Annotated[Unsupported[str], Query(alias="reservationId")] = None,
    reservation_ttl_seconds: Annotated[Unsupported[str], Query(alias="reservationTtlSeconds")] = None,
    reservation_expires_at: Annotated[Unsupported[str], Query(alias="reservationExpiresAt")] = None,
    reservation_metadata: Annotated[Unsupported[str], Query(alias="reservationMetadata")] = None,
) -> Response:
    if (feature_id is None) == (currency_id is None):
        raise InvalidArgument("pass exactly one of featureId or currencyId")
    if currency_id is not None:
        raise UnsupportedField("currencyId", "credit balances are not supported yet; check a featureId")
    assert feature_id is not None
    result = await service.check(
        request.app.state.db,
        snapshot_of(request),
        key.environment_id,
        customer_id,
        feature_id,
        requested_usage=requested_usage,
        requested_values=comma_list(requested_values, name="requestedValues"),
        resource_ref=resource_id,
    )
    return _enveloped(result)
