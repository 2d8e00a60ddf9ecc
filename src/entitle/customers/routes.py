from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from entitle.customers import service
from entitle.customers.schemas import (
    LINKABLE_VENDORS,
    CustomerImport,
    CustomerIntegrationOut,
    CustomerOut,
    CustomerUpdate,
    ImportResult,
    LinkBody,
    LinkUpdate,
)
from entitle.http.deps import DB, CreatedAt, Paging, ServerKey, comma_list
from entitle.http.wire import Envelope, PageEnvelope, envelope, page_envelope

router = APIRouter(prefix="/api/v1/customers", tags=["customers"])


def _out(view: service.CustomerView) -> CustomerOut:
    return CustomerOut.of(view.customer, view.links, view.sync_states)


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


@router.delete("/{customer_id}/payment-method", response_model=Envelope[CustomerOut])
def detach_payment_method(customer_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(_out(service.detach_payment_method(db, key.environment_id, customer_id)))
