"""A payment method the application collected itself (e.g. with Stripe Elements) becomes the customer's
default at the integration that bills it.

The provider is asked first, while the request waits (short timeout, nothing written yet): the payment
method must exist there and belong to no other provider customer, and its card details (brand, last
four digits, expiry) become the customer's `defaultPaymentMethod`. A refusal is a 400, a provider that
does not answer a 503 (`PROVIDER_UNAVAILABLE`); neither writes anything, so no job is left to retry a
payment method that can never be attached.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from entitle.billing import customer_sync, store
from entitle.billing.checkout import stripe_customer_id
from entitle.billing.models import Integration
from entitle.billing.provider import REQUEST_TIMEOUT_SECONDS, PaymentMethodDetails, PaymentMethodInUse
from entitle.billing.providers import provider_for
from entitle.billing.secrets import secret_box
from entitle.billing.service import IntegrationMismatch
from entitle.clock import utcnow
from entitle.config import load_settings
from entitle.customers import service as customers
from entitle.customers import store as customer_store
from entitle.customers.events import CustomerUpdated
from entitle.customers.models import Customer
from entitle.customers.schemas import CustomerFields, PaymentMethodAttach
from entitle.db import Database
from entitle.domain_events import publish
from entitle.errors import InvalidArgument, NotFound


def _billing_integration(s: Session, env_id: int, customer: Customer, req: PaymentMethodAttach) -> Integration:
    """`STRIPE` names the integration billing the customer; an integration id must be that one (or, for a
    customer bound to none yet, any connected one: the customer is then billed there)."""
    binding = store.customer_binding(s, customer)
    named = req.integration_id == "STRIPE"
    integration = binding.integration if named else store.integration_in(s, env_id, req.integration_id)
    if integration is None:
        raise NotFound("integration", req.integration_id)
    if not named and binding.excludes(integration):
        raise IntegrationMismatch(
            f"customer '{customer.ref_id}' is billed by another integration than '{req.integration_id}'"
        )
    return integration


def _integration_for_request(
    s: Session, env_id: int, customer: Customer | None, req: CustomerFields
) -> Integration | None:
    """The integration that will bill the customer once the request is applied: a Stripe link it gives,
    else the customer's (a new customer: the environment's default)."""
    links = req.integrations if "integrations" in req.model_fields_set else None
    named = next((link.id for link in links or [] if link.vendor_identifier == "STRIPE"), None)
    if named is not None:
        return store.integration_in(s, env_id, named)
    if customer is not None:
        return store.customer_binding(s, customer).integration
    return store.default_integration(s, env_id)


def check_given_payment_method(
    db: Database, env_id: int, ref_id: str, req: CustomerFields, payment_method_id: str
) -> dict[str, Any] | None:
    """`customers.ports.payment_method`: a payment method given on POST or PATCH /api/v1/customers is read at
    Stripe as an attached one is, before the request's transaction (None: no integration bills the customer)."""
    with db.read() as s:
        customer = customer_store.find(s, env_id, ref_id)
        integration = _integration_for_request(s, env_id, customer, req)
        if integration is None:
            return None
        linked = next(
            (link.synced_entity_id for link in req.integrations or [] if link.vendor_identifier == "STRIPE"), None
        )
        given = req.billing_id if "billing_id" in req.model_fields_set else None
        owner = given or linked or (stripe_customer_id(s, integration, customer) if customer is not None else None)
    return _checked(integration, payment_method_id, owner).as_default()


def _checked(integration: Integration, payment_method_id: str, owner: str | None) -> PaymentMethodDetails:
    """The payment method as Stripe has it, if it is there and no other Stripe customer's (400 otherwise;
    503 when Stripe does not answer)."""
    provider = provider_for(integration, secret_box(load_settings().data_dir), timeout=REQUEST_TIMEOUT_SECONDS)
    method = provider.payment_method(payment_method_id)
    if method.customer_billing_id is not None and method.customer_billing_id != owner:
        raise PaymentMethodInUse(
            f"paymentMethodId: payment method '{payment_method_id}' belongs to another Stripe customer "
            f"({method.customer_billing_id}); a payment method is attached to one customer only"
        )
    return method


def attach_payment_method(db: Database, env_id: int, ref_id: str, req: PaymentMethodAttach) -> customers.CustomerView:
    """The payment method becomes the customer's default, and the customer is synced so the provider
    charges it."""
    if req.vendor_identifier != "STRIPE":
        raise InvalidArgument(f"vendorIdentifier {req.vendor_identifier} is not a billing provider Entitle connects")
    with db.read() as s:
        customer = customer_store.get_live(s, env_id, ref_id)
        integration = _billing_integration(s, env_id, customer, req)
        owner = stripe_customer_id(s, integration, customer)
    method = _checked(integration, req.payment_method_id, owner)
    with db.transaction() as s:
        customer = customer_store.get_live(s, env_id, ref_id, for_update=True, write=True)
        integration = _billing_integration(s, env_id, customer, req)
        customer.default_payment_method = method.as_default()
        if req.billing_currency is not None:
            customer.billing_currency = req.billing_currency
        customer.updated_at = utcnow()
        s.flush()
        publish(s, CustomerUpdated(env_id=env_id, customer=customer))
        customer_sync.billing_info_passed(s, customer, integration)
        return customers.view(s, customer)
