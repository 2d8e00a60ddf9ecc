"""Our extension: `POST /api/v1/integrations` connects an environment to a billing provider (several may be
connected); `GET /api/v1/integrations/{id}/sync-states` shows what was synced to one and how it went."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request

from entitle.billing import checkout as billing_checkout
from entitle.billing import inbound, payment_methods, service
from entitle.billing import invoices as billing_invoices
from entitle.billing.models import STRIPE
from entitle.billing.schemas import (
    EntityType,
    IntegrationIn,
    IntegrationOut,
    StripeEventReceipt,
    SyncStateOut,
    invoice_out,
)
from entitle.customers.schemas import (
    CustomerOut,
    InvoiceOut,
    PaymentMethodAttach,
    PortalSessionIn,
    PortalSessionOut,
)
from entitle.http.deps import DB, Paging, ServerKey, comma_list
from entitle.http.wire import Envelope, IdOnly, PageEnvelope, envelope, page_envelope

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])


@router.post("", response_model=Envelope[IntegrationOut])
def connect_integration(body: IntegrationIn, key: ServerKey, db: DB, request: Request) -> dict[str, Any]:
    data_dir = request.app.state.settings.data_dir
    return envelope(_out(service.connect(db, data_dir, key.environment_id, body)))


def _out(view: service.IntegrationView) -> IntegrationOut:
    return IntegrationOut.of(view.row, is_default=view.is_default)


@router.get("", response_model=Envelope[list[IntegrationOut]])
def list_integrations(key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope([_out(view) for view in service.list_integrations(db, key.environment_id)])


@router.delete("/{integration_id}", response_model=Envelope[IntegrationOut])
def remove_integration(integration_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    """Disconnect one integration (docs/stripe.md, "Removing an integration"): its sync stops; links and
    Stripe objects stay; other integrations of the environment are untouched."""
    return envelope(_out(service.remove(db, key.environment_id, integration_id)))


@router.post("/{integration_id}/portal-configuration", response_model=Envelope[IntegrationOut])
def refresh_portal_configuration(integration_id: str, key: ServerKey, db: DB, request: Request) -> dict[str, Any]:
    """Our extension: the billing-portal configuration back to the recommended settings (made anew when
    it was deleted at the provider); it waits for the provider."""
    data_dir = request.app.state.settings.data_dir
    return envelope(_out(service.refresh_portal_configuration(db, data_dir, key.environment_id, integration_id)))


@router.get("/{integration_id}/sync-states", response_model=PageEnvelope[SyncStateOut])
def list_sync_states(
    integration_id: str,
    key: ServerKey,
    db: DB,
    page: Paging,
    entity_type: Annotated[EntityType | None, Query(alias="entityType")] = None,
    entity_id: Annotated[str | None, Query(alias="entityId", min_length=1, max_length=255)] = None,
) -> dict[str, Any]:
    """The sync state of each entity synced (or to be synced) to the integration, oldest first."""
    found = service.sync_states(db, key.environment_id, integration_id, page, entity_type, entity_id)
    return page_envelope(found, SyncStateOut.of)


async def _raw_body(request: Request) -> bytes:
    return await request.body()


@router.post("/{integration_id}/webhooks/stripe", response_model=Envelope[StripeEventReceipt])
def stripe_webhook(
    integration_id: str,
    payload: Annotated[bytes, Depends(_raw_body)],
    db: DB,
    request: Request,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> dict[str, Any]:
    """Events from Stripe (no API key: the Stripe signature, checked with the integration's webhook
    secret, authenticates them). Stored once per event id, answered at once, processed as a job."""
    data_dir = request.app.state.settings.data_dir
    receipt = inbound.receive(db, data_dir, STRIPE, integration_id, payload, stripe_signature)
    return envelope(
        StripeEventReceipt(id=receipt.event_id, type=receipt.type, handled=receipt.handled, duplicate=receipt.duplicate)
    )


# -- the customer's billing: payment method, portal, invoices (on the customers' paths) ------------------

customers_router = APIRouter(prefix="/api/v1/customers", tags=["customers"])


@customers_router.post("/{customer_id}/payment-method", response_model=Envelope[CustomerOut])
def attach_payment_method(customer_id: str, body: PaymentMethodAttach, key: ServerKey, db: DB) -> dict[str, Any]:
    view = payment_methods.attach_payment_method(db, key.environment_id, customer_id, body)
    return envelope(CustomerOut.of(view.customer, view.links, view.sync_states))


@customers_router.post("/{customer_id}/portal-session", response_model=Envelope[PortalSessionOut])
def create_portal_session(customer_id: str, body: PortalSessionIn, key: ServerKey, db: DB) -> dict[str, Any]:
    """Our extension: a Stripe Billing Portal URL for the customer (it waits for Stripe)."""
    url = billing_checkout.portal_session(db, key.environment_id, customer_id, body.return_url)
    return envelope(PortalSessionOut(url=url))


@customers_router.get("/{customer_id}/invoices", response_model=PageEnvelope[InvoiceOut])
def list_invoices(
    customer_id: str,
    key: ServerKey,
    db: DB,
    page: Paging,
    issued_after: Annotated[datetime | None, Query(alias="issuedAfter")] = None,
    issued_before: Annotated[datetime | None, Query(alias="issuedBefore")] = None,
    state_in: Annotated[str | None, Query(alias="stateIn")] = None,
    contract_external_id: Annotated[str | None, Query(alias="contractExternalId", max_length=255)] = None,
    order_by: Annotated[billing_invoices.OrderBy, Query(alias="orderBy")] = "issueDate",
    order_dir: Annotated[billing_invoices.OrderDir, Query(alias="orderDir")] = "ASC",
) -> dict[str, Any]:
    """Read live from the billing provider; empty without one or for a customer not synced."""
    states = comma_list(state_in, billing_invoices.INVOICE_STATES, name="stateIn")
    query = billing_invoices.InvoiceQuery(
        issued_after=issued_after,
        issued_before=issued_before,
        states=tuple(states) if states is not None else None,
        contract_ref=contract_external_id,
        order_by=order_by,
        order_dir=order_dir,
    )
    ref, result = billing_invoices.list_invoices(db, key.environment_id, customer_id, query, page)
    return page_envelope(result, lambda invoice: invoice_out(ref, invoice))


subscriptions_router = APIRouter(prefix="/api/v1/subscriptions", tags=["subscriptions"])


@subscriptions_router.post("/{subscription_id}/invoice/paid", response_model=Envelope[IdOnly])
def mark_invoice_paid(subscription_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    """The latest invoice of a subscription paid by invoice was paid out of band (docs/stripe.md)."""
    return envelope(IdOnly(id=billing_invoices.mark_invoice_paid(db, key.environment_id, subscription_id)))
