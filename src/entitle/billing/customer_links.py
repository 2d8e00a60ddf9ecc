"""The provider customer of an Entitle customer: its spec (what is sent, with the metadata that links it
back) and its link, recorded once the provider has made it (`subscription_sync`, `customer_sync`,
`setup_intents` and the checkout make it)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from entitle.billing import rules, store
from entitle.billing.models import CUSTOMER, SUCCESS, Integration
from entitle.billing.provider import CustomerSpec
from entitle.config import console_page_url
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.environments.models import Environment


def customer_spec(s: Session, customer: Customer, console: str) -> CustomerSpec:
    """The provider customer for an Entitle customer, with the metadata that links it back."""
    env = s.get(Environment, customer.environment_id)
    assert env is not None
    return CustomerSpec(
        ref=customer.ref_id,
        name=customer.name,
        email=customer.email,
        currency=customer.billing_currency,
        metadata=rules.clip_metadata(
            {
                "entitleEnvironment": env.name,
                "entitleCustomerId": customer.ref_id,
                "entitleEntityUrl": console_page_url(console, "CUSTOMER", customer.ref_id),
            }
        ),
        payment_method=payment_method_of(customer),
        locales=rules.stripe_locales(customer.language),
    )


def payment_method_of(customer: Customer) -> str | None:
    method = (customer.default_payment_method or {}).get("billingId")
    return str(method) if method else None


def link_customer(s: Session, integration: Integration, customer_pk: int, customer_id: str) -> None:
    customer = s.get(Customer, customer_pk)
    assert customer is not None
    store.put_link(s, integration, CUSTOMER, customer_pk, SUCCESS, billing_id=customer_id)
    if not customer.billing_id:
        customer.billing_id = customer_id


def record_customer(db: Database, integration: Integration, customer_pk: int, customer_id: str) -> None:
    """Link the customer to the provider customer just made for it (a SetupIntent or a Checkout made it
    before any subscription sync), in a transaction of its own."""
    with db.transaction() as s:
        link_customer(s, integration, customer_pk, customer_id)


__all__ = ["customer_spec", "link_customer", "payment_method_of", "record_customer"]
