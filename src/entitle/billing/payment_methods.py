"""A payment method the application collected itself (e.g. with Stripe Elements) becomes the customer's
default at the integration that bills it."""

from __future__ import annotations

from entitle.billing import customer_sync, store
from entitle.billing.service import IntegrationMismatch
from entitle.clock import utcnow
from entitle.customers import service as customers
from entitle.customers import store as customer_store
from entitle.customers.events import CustomerUpdated
from entitle.customers.schemas import PaymentMethodAttach
from entitle.db import Database
from entitle.domain_events import publish
from entitle.errors import InvalidArgument, NotFound


def attach_payment_method(db: Database, env_id: int, ref_id: str, req: PaymentMethodAttach) -> customers.CustomerView:
    """The payment method becomes the customer's default, and the customer is synced so the provider
    charges it."""
    if req.vendor_identifier != "STRIPE":
        raise InvalidArgument(f"vendorIdentifier {req.vendor_identifier} is not a billing provider Entitle connects")
    with db.transaction() as s:
        customer = customer_store.get_live(s, env_id, ref_id, for_update=True)
        # `STRIPE` names the integration billing the customer; an integration id must be that one (or,
        # for a customer bound to none yet, any connected one: the customer is then billed there).
        binding = store.customer_binding(s, customer)
        named = req.integration_id == "STRIPE"
        integration = binding.integration if named else store.integration_in(s, env_id, req.integration_id)
        if integration is None:
            raise NotFound("integration", req.integration_id)
        if not named and binding.excludes(integration):
            raise IntegrationMismatch(
                f"customer '{ref_id}' is billed by another integration than '{req.integration_id}'"
            )
        customer.default_payment_method = {"billingId": req.payment_method_id, "type": "CARD"}
        if req.billing_currency is not None:
            customer.billing_currency = req.billing_currency
        customer.updated_at = utcnow()
        s.flush()
        publish(s, CustomerUpdated(env_id=env_id, customer=customer))
        customer_sync.billing_info_passed(s, customer, integration)
        return customers.view(s, customer)
