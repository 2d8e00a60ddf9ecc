from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Depends, Query, Response
from pydantic import SerializeAsAny
from starlette.concurrency import run_in_threadpool

from entitle.customers.schemas import CustomerOut
from entitle.environments.service import KeyRead
from entitle.http.body import DeclaredBody, SentBody, openapi_body
from entitle.http.deps import DB, CreatedAt, Paging, ServerKey, ServerKeyRead, comma_list
from entitle.http.hot_route import PlannedRoute
from entitle.http.wire import (
    Envelope,
    IdOnly,
    PageEnvelope,
    TaskResult,
    Unsupported,
    WireModel,
    envelope,
    enveloped_response,
    page_envelope,
)
from entitle.subscriptions import cancellation, changes, importing, journey, provisioning, service
from entitle.subscriptions.preview import preview_subscription as preview_subscription_
from entitle.subscriptions.schemas import (
    PRICING_TYPES,
    SUBSCRIPTION_STATUSES,
    AddonOut,
    Budget,
    CouponOut,
    CustomerProvisionWithSubscription,
    FutureUpdateOut,
    FutureUpdateTarget,
    MoneyAmount,
    PreviewOut,
    PriceOut,
    SubscriptionCancel,
    SubscriptionDelegate,
    SubscriptionEntitlementRef,
    SubscriptionImport,
    SubscriptionMigrate,
    SubscriptionOut,
    SubscriptionPreview,
    SubscriptionProvision,
    SubscriptionTransfer,
    SubscriptionUpdate,
    TrialOut,
)
from entitle.sync_states import SyncStateOut

router = APIRouter(prefix="/api/v1/subscriptions", tags=["subscriptions"])


class ProvisionOut(WireModel):
    id: str
    status: str
    subscription: SubscriptionOut | None = None
    # The customer's entitlements (`entitle.entitlements`' EntitlementResult, through `ports.current_entitlements`).
    entitlements: list[SerializeAsAny[WireModel]] | None = None
    checkout_url: str | None = None
    checkout_billing_id: str | None = None
    is_scheduled: bool | None = None


def subscription_out(view: service.SubscriptionView) -> SubscriptionOut:
    sub = view.sub
    window = view.billing_window()
    return SubscriptionOut(
        id=sub.ref_id,
        customer_id=view.customer_ref,
        plan_id=sub.plan_ref,
        created_at=sub.created_at,
        start_date=sub.start_date,
        status=sub.status,
        pricing_type=sub.pricing_type,
        payment_collection=sub.payment_collection,
        payment_collection_method=sub.payment_collection_method,
        billing_id=sub.billing_id,
        billing_period=sub.billing_period,
        billing_country_code=sub.billing_country_code,
        billing_cycle_anchor=sub.billing_cycle_anchor,
        current_billing_period_start=window.start if window else None,
        current_billing_period_end=window.end if window else None,
        end_date=sub.end_date,
        effective_end_date=sub.end_date,
        cancellation_date=sub.cancellation_date,
        cancel_reason=sub.cancel_reason,
        trial_end_date=sub.trial_end_date,
        trial=TrialOut(trial_end_behavior=sub.trial_end_behavior) if sub.trial_end_behavior else None,
        addons=[AddonOut(id=a.addon_ref, quantity=a.quantity) for a in view.addons],
        budget=Budget.model_validate(sub.budget) if sub.budget else None,
        minimum_spend=MoneyAmount.model_validate(sub.minimum_spend) if sub.minimum_spend else None,
        paying_customer_id=view.paying_customer_ref,
        contract_id=view.contract_ref,
        resource_id=sub.resource_ref,
        metadata=sub.metadata_ or {},
        coupons=[CouponOut.model_validate(view.coupon)] if view.coupon else None,
        subscription_entitlements=[
            SubscriptionEntitlementRef(id=o.ref_id, type=o.entitlement_type) for o in view.overrides
        ],
        future_updates=[
            FutureUpdateOut(
                scheduled_execution_time=u.scheduled_at,
                schedule_status=u.schedule_status,
                subscription_schedule_type=u.schedule_type,
                target_package=FutureUpdateTarget(id=u.target_package_ref) if u.target_package_ref else None,
            )
            for u in view.future_updates
        ],
        sync_states=[SyncStateOut.of(state, sub.ref_id) for state in view.sync_states],
        prices=[PriceOut.model_validate(entry) for entry in sub.price_overrides] if sub.price_overrides else None,
    )


@router.post("", response_model=Envelope[ProvisionOut])
def provision_subscription(body: SubscriptionProvision, key: ServerKey, db: DB) -> dict[str, Any]:
    result = provisioning.provision(db, key.environment_id, body)
    out = ProvisionOut(
        id=result.view.sub.ref_id,
        # PAYMENT_REQUIRED: the subscription (PAYMENT_PENDING) waits for the customer at checkoutUrl.
        status="SUCCESS" if result.checkout_url is None else "PAYMENT_REQUIRED",
        subscription=subscription_out(result.view),
        entitlements=result.entitlements,
        checkout_url=result.checkout_url,
        checkout_billing_id=result.checkout_billing_id,
        is_scheduled=result.is_scheduled,
    )
    return envelope(out)


@router.post("/preview", response_model=Envelope[PreviewOut])
def preview_subscription(body: SubscriptionPreview, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(preview_subscription_(db, key.environment_id, body))


@router.get("", response_model=PageEnvelope[SubscriptionOut])
def list_subscriptions(
    key: ServerKey,
    db: DB,
    page: Paging,
    created_at: CreatedAt,
    customer_id: Annotated[str | None, Query(alias="customerId", max_length=255)] = None,
    plan_id: Annotated[str | None, Query(alias="planId", max_length=255)] = None,
    resource_id: Annotated[str | None, Query(alias="resourceId", max_length=255)] = None,
    status: Annotated[str | None, Query()] = None,
    pricing_type: Annotated[str | None, Query(alias="pricingType")] = None,
) -> dict[str, Any]:
    result, views = service.list_subscriptions(
        db,
        key.environment_id,
        page,
        customer_ref=customer_id,
        plan_ref=plan_id,
        resource_ref=resource_id,
        statuses=comma_list(status, SUBSCRIPTION_STATUSES, name="status"),
        pricing_types=comma_list(pricing_type, PRICING_TYPES, name="pricingType"),
        created_at=created_at,
    )
    by_pk = {v.sub.pk: v for v in views}
    return page_envelope(result, lambda sub: subscription_out(by_pk[sub.pk]))


@router.get("/{subscription_id}", response_model=Envelope[SubscriptionOut])
def get_subscription(subscription_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(subscription_out(service.get_subscription(db, key.environment_id, subscription_id)))


@router.patch("/{subscription_id}", response_model=Envelope[SubscriptionOut])
def update_subscription(subscription_id: str, body: SubscriptionUpdate, key: ServerKey, db: DB) -> dict[str, Any]:
    view = changes.update_subscription(db, key.environment_id, subscription_id, body)
    return envelope(subscription_out(view))


@router.post("/{subscription_id}/cancel", response_model=Envelope[SubscriptionOut])
def cancel_subscription(
    subscription_id: str, key: ServerKey, db: DB, body: SubscriptionCancel | None = None
) -> dict[str, Any]:
    view = cancellation.cancel_subscription(db, key.environment_id, subscription_id, body or SubscriptionCancel())
    return envelope(subscription_out(view))


@router.post("/{subscription_id}/migrate", response_model=Envelope[SubscriptionOut])
def migrate_subscription(
    subscription_id: str, key: ServerKey, db: DB, body: SubscriptionMigrate | None = None
) -> dict[str, Any]:
    when = body.subscription_migration_time if body else None
    return envelope(subscription_out(changes.migrate_subscription(db, key.environment_id, subscription_id, when)))


@router.post("/{subscription_id}/delegate", response_model=Envelope[SubscriptionOut])
def delegate_subscription(subscription_id: str, body: SubscriptionDelegate, key: ServerKey, db: DB) -> dict[str, Any]:
    view = changes.delegate_subscription(db, key.environment_id, subscription_id, body.target_customer_id)
    return envelope(subscription_out(view))


@router.post("/{subscription_id}/transfer", response_model=Envelope[SubscriptionOut])
def transfer_subscription(subscription_id: str, body: SubscriptionTransfer, key: ServerKey, db: DB) -> dict[str, Any]:
    view = changes.transfer_subscription(db, key.environment_id, subscription_id, body.destination_resource_id)
    return envelope(subscription_out(view))


@router.delete("/{subscription_id}/future-update/schedule", response_model=Envelope[IdOnly])
def cancel_scheduled_update(subscription_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(IdOnly(id=changes.cancel_future_update(db, key.environment_id, subscription_id)))


@router.delete("/{subscription_id}/future-update/pending-payment", response_model=Envelope[IdOnly])
def cancel_pending_payment_update(subscription_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(IdOnly(id=changes.cancel_pending_payment_update(db, key.environment_id, subscription_id)))


@router.post("/import", response_model=Envelope[TaskResult])
def import_subscriptions(body: SubscriptionImport, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(TaskResult(task_id=importing.import_subscriptions(db, key.environment_id, body)))


class UsageCharge(WireModel):
    # Charging usage before the period's invoice is refused (changes.refuse_usage_billing), and so is its date.
    until_date: Unsupported[datetime] = None


@router.post("/{subscription_id}/usage/charge", response_model=Envelope[IdOnly])
def charge_usage(subscription_id: str, key: ServerKey, db: DB, body: UsageCharge | None = None) -> NoReturn:
    changes.refuse_usage_billing(db, key.environment_id, subscription_id, "charging usage before the period's invoice")


@router.post("/{subscription_id}/usage/sync", response_model=Envelope[IdOnly])
def sync_usage(subscription_id: str, key: ServerKey, db: DB) -> NoReturn:
    changes.refuse_usage_billing(db, key.environment_id, subscription_id, "sending usage before the period's invoice")


# -- on the customers' paths: a customer with its first subscriptions, and the resources it holds -------

customers_router = APIRouter(prefix="/api/v1/customers", tags=["customers"])


# The body is read as FastAPI reads a declared body and validated in the worker thread that provisions
# (`http.body.DeclaredBody`), and the route is solved by a plan made once (`http.hot_route.PlannedRoute`,
# routed by the route table where it always was): FastAPI's solving of the same declarations, inspected
# anew on every request, cost about a tenth of a provisioning's CPU.
_PROVISION_BODY = DeclaredBody(CustomerProvisionWithSubscription)


async def post_customer(sent: Annotated[SentBody, Depends(_PROVISION_BODY)], key: ServerKeyRead) -> Response:
    # The body first: FastAPI reads a body before any dependency (see `DeclaredBody`).
    return await run_in_threadpool(provision_customer, key, sent)


def provision_customer(key: KeyRead, sent: SentBody) -> Response:
    view = journey.provision_customer(key.db, key, _PROVISION_BODY.validate_sent(sent))
    return enveloped_response(CustomerOut.of(view.customer, view.links, view.sync_states))


customers_router.add_api_route(
    "",
    post_customer,
    methods=["POST"],
    response_model=Envelope[CustomerOut],
    name="provision_customer",  # its operation id, as when the route was `provision_customer` itself
    openapi_extra=openapi_body(CustomerProvisionWithSubscription),
    route_class_override=PlannedRoute,
)


class ResourceOut(WireModel):
    id: str
    created_at: datetime
    updated_at: datetime


@customers_router.get("/{customer_id}/resources", response_model=PageEnvelope[ResourceOut])
def list_resources(customer_id: str, key: ServerKey, db: DB, page: Paging) -> dict[str, Any]:
    result = service.list_resources(db, key.environment_id, customer_id, page)
    return page_envelope(result, lambda r: ResourceOut(id=r.id, created_at=r.created_at, updated_at=r.updated_at))
