"""A Stripe SetupIntent for one customer, for a page that collects a card with Stripe Elements
(`confirmCardSetup`, Stripe's "save a card, charge later" flow; the embeddable checkout uses it).

The request waits for Stripe (short timeout): the answer *is* the client secret only Stripe makes. The
Stripe customer is made first when the customer has none yet (the customer sync's code and
idempotency, recorded at once), so the card is saved on the right Stripe customer. Nothing else is
written: the card becomes the customer's default only when the page then attaches the payment method
(`POST /api/v1/customers/{id}/payment-method`), which reads its details back from Stripe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from entitle.billing import store
from entitle.billing.checkout import stripe_customer_id
from entitle.billing.customer_links import customer_spec, record_customer
from entitle.billing.provider import REQUEST_TIMEOUT_SECONDS
from entitle.billing.providers import provider_for
from entitle.billing.secrets import secret_box
from entitle.config import load_settings
from entitle.customers import store as customers
from entitle.db import Database
from entitle.errors import BillingProviderError, FailedPrecondition

log = logging.getLogger(__name__)

STRIPE_JS_URL = "https://js.stripe.com/v3/"
# Where the local emulator (localstripe) serves its Stripe.js stand-in, under the integration's apiBase.
EMULATOR_STRIPE_JS_PATH = "/js.stripe.com/v3/"
# Any publishable key works with the emulator, when the integration has none set.
EMULATOR_PUBLISHABLE_KEY = "pk_test_entitle_emulator"


@dataclass(frozen=True)
class SetupIntentView:
    id: str
    client_secret: str
    integration_id: str
    # The one script a page loads from elsewhere: Stripe's own, or the emulator's when the integration
    # talks to one (an apiBase), never anything else.
    stripe_js_url: str
    publishable_key: str | None


def create_setup_intent(db: Database, env_id: int, customer_ref: str) -> SetupIntentView:
    settings = load_settings()
    with db.read() as s:
        customer = customers.get_live(s, env_id, customer_ref)
        integration = store.integration_for_customer(s, customer)
        if integration is None:
            raise FailedPrecondition(
                "saving a card needs a billing provider: connect Stripe with POST /api/v1/integrations"
            )
        existing = stripe_customer_id(s, integration, customer)
        spec = customer_spec(s, customer, settings.console_base_url)
        customer_pk = customer.pk
    provider = provider_for(integration, secret_box(settings.data_dir), timeout=REQUEST_TIMEOUT_SECONDS)
    client = getattr(provider, "client", None)
    if client is None:
        raise FailedPrecondition(f"billing vendor '{integration.vendor}' cannot save cards from a page")
    try:
        billing_id = provider.sync_customer(
            spec, existing_id=existing, idempotency_key=f"entitle-setup-customer-{integration.ref_id}-{customer_pk}"
        )
        if billing_id is None:
            raise RuntimeError("the provider did not create a customer")
        if billing_id != existing:
            record_customer(db, integration, customer_pk, billing_id)
        # No idempotency key: each checkout attempt (a retry after a declined card too) gets its own intent.
        intent = client.v1.setup_intents.create(
            params={
                "customer": billing_id,
                "usage": "off_session",
                "payment_method_types": ["card"],
                "metadata": {"entitleCustomerId": customer_ref},
            }
        )
    except Exception as exc:
        log.warning("Stripe SetupIntent for customer %s failed: %s", customer_ref, exc)
        raise BillingProviderError(f"Stripe could not create the SetupIntent: {exc}"[:1000]) from exc
    emulated = integration.api_base is not None
    return SetupIntentView(
        id=str(intent.id),
        client_secret=str(intent.client_secret),
        integration_id=integration.ref_id,
        stripe_js_url=f"{integration.api_base}{EMULATOR_STRIPE_JS_PATH}" if emulated else STRIPE_JS_URL,
        publishable_key=integration.publishable_key or (EMULATOR_PUBLISHABLE_KEY if emulated else None),
    )


__all__ = ["SetupIntentView", "create_setup_intent"]
