from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from entitle.billing import checkout as billing_checkout
from entitle.billing import invoices as billing_invoices
from entitle.billing.provider import ProviderInvoice
from entitle.customers import service
from entitle.customers.schemas import (
    LINKABLE_VENDORS,
    CustomerImport,
    CustomerIntegrationOut,
    CustomerOut,
    CustomerProvision,
    CustomerUpdate,
    ImportResult,
    InvoiceLineOut,
    InvoiceOut,
    LinkBody,
    LinkUpdate,
    PaymentMethodAttach,
    PortalSessionIn,
    PortalSessionOut,
)
from entitle.http.deps import DB, CreatedAt, Paging, ServerKey, comma_list
from entitle.http.wire import Envelope, PageEnvelope, WireModel, envelope, page_envelope

router = APIRouter(prefix="/api/v1/customers", tags=["customers"])


def _out(view: service.CustomerView) -> CustomerOut:
    return CustomerOut.of(view.customer, view.links, view.sync_states)


@router.post("", response_model=Envelope[CustomerOut])
def provision_customer(body: CustomerProvision, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(_out(service.provision_customer(db, key.environment_id, body)))


@router.get("", response_model=PageEnvelope[CustomerOut])
def list_customers(
    key: ServerKey,
    db: DB,
    page: Paging,
    created_at: CreatedAt,
    email: Annotated[str | None, Query(max_length=320)] = None,
    name: Annotated[str | None, Query(max_length=1024)] = None,
) -> dict[str, Any]:
    result, links, states = service.list_customers(
        db, key.environment_id, page, email=email, name=name, created_at=created_at
    )
    return page_envelope(result, lambda c: CustomerOut.of(c, links.get(c.pk, []), states.get(c.pk, [])))


@router.post("/import", response_model=Envelope[ImportResult])
def import_customers(body: CustomerImport, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(ImportResult(new_customers=service.import_customers(db, key.environment_id, body)))


@router.get("/{customer_id}", response_model=Envelope[CustomerOut])
def get_customer(customer_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(_out(service.get_customer(db, key.environment_id, customer_id)))


@router.patch("/{customer_id}", response_model=Envelope[CustomerOut])
def update_customer(customer_id: str, body: CustomerUpdate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(_out(service.update_customer(db, key.environment_id, customer_id, body)))


@router.post("/{customer_id}/archive", response_model=Envelope[CustomerOut])
def archive_customer(customer_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(_out(service.archive_customer(db, key.environment_id, customer_id)))


@router.post("/{customer_id}/unarchive", response_model=Envelope[CustomerOut])
def unarchive_customer(customer_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(_out(service.unarchive_customer(db, key.environment_id, customer_id)))


@router.get("/{customer_id}/integrations", response_model=PageEnvelope[CustomerIntegrationOut])
def list_integrations(
    customer_id: str,
    key: ServerKey,
    db: DB,
    page: Paging,
    vendor_identifier: Annotated[str | None, Query(alias="vendorIdentifier")] = None,
) -> dict[str, Any]:
    vendors = comma_list(vendor_identifier, LINKABLE_VENDORS, name="vendorIdentifier")
    result = service.list_links(db, key.environment_id, customer_id, page, vendors)
    return page_envelope(result, CustomerIntegrationOut.of)


@router.post("/{customer_id}/integrations", response_model=Envelope[CustomerIntegrationOut])
def link_integration(customer_id: str, body: LinkBody, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(CustomerIntegrationOut.of(service.link_integration(db, key.environment_id, customer_id, body)))


@router.get("/{customer_id}/integrations/{integration_id}", response_model=Envelope[CustomerIntegrationOut])
def get_integration(customer_id: str, integration_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(CustomerIntegrationOut.of(service.get_link(db, key.environment_id, customer_id, integration_id)))


@router.patch("/{customer_id}/integrations/{integration_id}", response_model=Envelope[CustomerIntegrationOut])
def update_integration(
    customer_id: str, integration_id: str, body: LinkUpdate, key: ServerKey, db: DB
) -> dict[str, Any]:
    row = service.update_link(db, key.environment_id, customer_id, integration_id, body.synced_entity_id)
    return envelope(CustomerIntegrationOut.of(row))


@router.delete("/{customer_id}/integrations/{integration_id}", response_model=Envelope[CustomerIntegrationOut])
def unlink_integration(customer_id: str, integration_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(
        CustomerIntegrationOut.of(service.unlink_integration(db, key.environment_id, customer_id, integration_id))
    )


class ResourceOut(WireModel):
    id: str
    created_at: datetime
    updated_at: datetime


@router.get("/{customer_id}/resources", response_model=PageEnvelope[ResourceOut])
def list_resources(customer_id: str, key: ServerKey, db: DB, page: Paging) -> dict[str, Any]:
    from entitle.subscriptions.service import list_resources as resources

    result = resources(db, key.environment_id, customer_id, page)
    return page_envelope(result, lambda r: ResourceOut(id=r.id, created_at=r.created_at, updated_at=r.updated_at))


@router.post("/{customer_id}/payment-method", response_model=Envelope[CustomerOut])
def attach_payment_method(customer_id: str, body: PaymentMethodAttach, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(_out(service.attach_payment_method(db, key.environment_id, customer_id, body)))


@router.delete("/{customer_id}/payment-method", response_model=Envelope[CustomerOut])
def detach_payment_method(customer_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(_out(service.detach_payment_method(db, key.environment_id, customer_id)))


@router.post("/{customer_id}/portal-session", response_model=Envelope[PortalSessionOut])
def create_portal_session(customer_id: str, body: PortalSessionIn, key: ServerKey, db: DB) -> dict[str, Any]:
    """Our extension: a Stripe Billing Portal URL for the customer (it waits for Stripe)."""
    url = billing_checkout.portal_session(db, key.environment_id, customer_id, body.return_url)
    return envelope(PortalSessionOut(url=url))


def _invoice_out(customer_ref: str, invoice: ProviderInvoice) -> InvoiceOut:
    money = billing_invoices.major
    return InvoiceOut(
        invoice_id=invoice.id,
        state=invoice.state,
        line_items=[
            InvoiceLineOut(
                amount=money(line.amount_minor, invoice.currency),
                description=line.description,
                product_external_id=line.product_ref,
                quantity=line.quantity,
                unit_price=money(line.unit_amount_minor, invoice.currency)
                if line.unit_amount_minor is not None
                else None,
            )
            for line in invoice.lines
        ],
        invoice_number=invoice.number,
        invoice_external_id=invoice.id,
        customer_external_id=customer_ref,
        currency=invoice.currency.upper() or None,
        issue_date=invoice.issued_at,
        due_date=invoice.due_at,
        paid_date=invoice.paid_at,
        subtotal=money(invoice.subtotal_minor, invoice.currency),
        discount=money(invoice.discount_minor, invoice.currency),
        tax=money(invoice.tax_minor, invoice.currency),
        total=money(invoice.total_minor, invoice.currency),
    )


@router.get("/{customer_id}/invoices", response_model=PageEnvelope[InvoiceOut])
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
    return page_envelope(result, lambda invoice: _invoice_out(ref, invoice))
