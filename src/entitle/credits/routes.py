from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from entitle.credits import service
from entitle.credits.schemas import (
    CURRENCY_STATUSES,
    LEDGER_EVENT_TYPES,
    AssociatedEntityOut,
    AutoRechargeOut,
    ConsumptionBatch,
    ConsumptionIn,
    ConsumptionOut,
    CreditUsage,
    CurrencyCreate,
    CurrencyOut,
    CurrencyUpdate,
    EstimateResult,
    EventEstimateIn,
    GrantCreate,
    GrantOut,
    LedgerEntryOut,
    ReleaseIn,
    ReleaseOut,
    UsageEstimateIn,
)
from entitle.db.pagination import DEFAULT_LIMIT, PageRequest
from entitle.http.deps import DB, CreatedAt, Paging, ServerKey, comma_list
from entitle.http.wire import Envelope, PageEnvelope, envelope, page_envelope

router = APIRouter(prefix="/api/v1/credits", tags=["credits"])
# What a usage or an event would cost in credits: under the usage and events paths, answered by credits.
estimates_router = APIRouter(tags=["credits"])

CustomerQuery = Annotated[str, Query(alias="customerId", min_length=1, max_length=255)]
CurrencyQuery = Annotated[str | None, Query(alias="currencyId", min_length=1, max_length=255)]
TimeRange = Literal["LAST_DAY", "LAST_WEEK", "LAST_MONTH", "LAST_YEAR"]
ResourceQuery = Annotated[str | None, Query(alias="resourceId", min_length=1, max_length=255)]


def _same(item: Any) -> Any:
    return item


# -- custom currencies -----------------------------------------------------------------------------------


@router.post("/custom-currencies", response_model=Envelope[CurrencyOut])
def create_currency(body: CurrencyCreate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(service.create_currency(db, key.environment_id, body))


@router.get("/custom-currencies", response_model=PageEnvelope[CurrencyOut])
def list_currencies(
    key: ServerKey, db: DB, page: Paging, status: Annotated[str | None, Query(max_length=100)] = None
) -> dict[str, Any]:
    statuses = comma_list(status, CURRENCY_STATUSES, name="status")
    return page_envelope(service.list_currencies(db, key.environment_id, page, statuses), _same)


@router.patch("/custom-currencies/{currency_id}", response_model=Envelope[CurrencyOut])
def update_currency(currency_id: str, body: CurrencyUpdate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(service.update_currency(db, key.environment_id, currency_id, body))


@router.post("/custom-currencies/{currency_id}/archive", response_model=Envelope[CurrencyOut])
def archive_currency(currency_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(service.set_archived(db, key.environment_id, currency_id, True))


@router.post("/custom-currencies/{currency_id}/unarchive", response_model=Envelope[CurrencyOut])
def unarchive_currency(currency_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(service.set_archived(db, key.environment_id, currency_id, False))


@router.get("/custom-currencies/{currency_id}/associated-entities", response_model=Envelope[list[AssociatedEntityOut]])
def associated_entities(currency_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(service.associated_entities(db, key.environment_id, currency_id))


# -- grants and the ledger -------------------------------------------------------------------------------


@router.post("/grants", response_model=Envelope[GrantOut])
def create_grant(body: GrantCreate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(service.create_grant(db, key.environment_id, body))


@router.get("/grants", response_model=PageEnvelope[GrantOut])
def list_grants(
    key: ServerKey,
    db: DB,
    page: Paging,
    created_at: CreatedAt,
    customer_id: CustomerQuery,
    currency_id: CurrencyQuery = None,
    resource_id: ResourceQuery = None,
) -> dict[str, Any]:
    found = service.list_grants(
        db,
        key.environment_id,
        page,
        customer_ref=customer_id,
        currency_ref=currency_id,
        resource_ref=resource_id,
        created_at=created_at,
    )
    return page_envelope(found, _same)


@router.post("/grants/{grant_id}/void", response_model=Envelope[GrantOut])
def void_grant(grant_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(service.void_grant(db, key.environment_id, grant_id))


@router.get("/ledger", response_model=PageEnvelope[LedgerEntryOut])
def list_ledger(
    key: ServerKey,
    db: DB,
    page: Paging,
    customer_id: CustomerQuery,
    currency_id: CurrencyQuery = None,
    resource_id: ResourceQuery = None,
    event_type: Annotated[str | None, Query(alias="eventType", max_length=64)] = None,
    reservation_id: Annotated[str | None, Query(alias="reservationId", max_length=255)] = None,
) -> dict[str, Any]:
    types = comma_list(event_type, LEDGER_EVENT_TYPES, name="eventType")
    found = service.list_ledger(
        db,
        key.environment_id,
        page,
        customer_ref=customer_id,
        currency_ref=currency_id,
        resource_ref=resource_id,
        event_types=types,
        reservation_ref=reservation_id,
    )
    return page_envelope(found, _same)


# -- consumption and reservations ------------------------------------------------------------------------


@router.post("/consumption", response_model=Envelope[ConsumptionOut])
def consume(body: ConsumptionIn, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(service.consume(db, key.environment_id, body))


@router.post("/consumption/async", response_model=Envelope[dict[str, Any]])
def consume_async(body: ConsumptionBatch, key: ServerKey, db: DB) -> dict[str, Any]:
    """Applied before the answer (all or nothing), so what the caller reads next already counts it."""
    service.consume_batch(db, key.environment_id, body.consumptions)
    return envelope({})


@router.post("/reservations/{reservation_id}/release", response_model=Envelope[ReleaseOut])
def release(reservation_id: str, body: ReleaseIn, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(service.release(db, key.environment_id, reservation_id, body))


# -- settings and usage -----------------------------------------------------------------


@router.get("/auto-recharge", response_model=Envelope[AutoRechargeOut])
def auto_recharge(
    key: ServerKey, db: DB, customer_id: CustomerQuery, currency_id: Annotated[str, Query(alias="currencyId")]
) -> dict[str, Any]:
    return envelope(service.auto_recharge(db, key.environment_id, customer_id, currency_id))


@router.get("/usage", response_model=Envelope[CreditUsage])
def credit_usage(
    key: ServerKey,
    db: DB,
    customer_id: CustomerQuery,
    limit: Annotated[int, Query(ge=1, le=100)] = DEFAULT_LIMIT,
    after: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[str | None, Query(max_length=200)] = None,
    currency_id: CurrencyQuery = None,
    resource_id: ResourceQuery = None,
    time_range: Annotated[TimeRange | None, Query(alias="timeRange")] = None,
    start_date: Annotated[datetime | None, Query(alias="startDate")] = None,
    end_date: Annotated[datetime | None, Query(alias="endDate")] = None,
    group_by: Annotated[str | None, Query(alias="groupBy", max_length=1000)] = None,
) -> dict[str, Any]:
    found = service.credit_usage(
        db,
        key.environment_id,
        PageRequest(limit=limit, after=after, before=before),
        customer_ref=customer_id,
        currency_ref=currency_id,
        resource_ref=resource_id,
        time_range=time_range,
        start=start_date,
        end=end_date,
        group_by=group_by,
    )
    return envelope(found)


# -- estimates -------------------------------------------------------------------------------------------


@estimates_router.post("/api/v1/usage/estimate", response_model=Envelope[EstimateResult])
def estimate_usage(body: UsageEstimateIn, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(service.estimate_usage(db, key.environment_id, body))


@estimates_router.post("/api/v1/events/estimate", response_model=Envelope[EstimateResult])
def estimate_event(body: EventEstimateIn, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(service.estimate_event(db, key.environment_id, body))
