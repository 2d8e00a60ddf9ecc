"""`/demo`: a sample application page with the three widgets, for a demo customer on the demo catalog
(`entitle demo`), so a newcomer sees them work at once.

What a real application's backend does is done here by the server itself: it keeps a client key (saved
under the data directory, like the demo server key) and signs a short-lived token for the demo customer.
The page is for the `development` environment only and says what is missing instead of failing: no demo
catalog (run `entitle demo`), or no Stripe integration (start the local emulator and connect it).
"""

from __future__ import annotations

import contextlib
import html
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import jwt

from entitle.billing import store as billing_store
from entitle.catalog.products import service as products
from entitle.clock import utcnow
from entitle.db import Database
from entitle.environments.access import signing_secret
from entitle.environments.models import KeyKind
from entitle.environments.service import create_key, ensure_environment
from entitle.errors import AlreadyExists, NotFound
from entitle.secrets import SecretBox
from entitle.subscriptions import journey
from entitle.subscriptions.schemas import CustomerProvisionWithSubscription

ENVIRONMENT = "development"
DEMO_CUSTOMER = "demo-customer"
TOKEN_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True)
class DemoContext:
    product_id: str
    client_key: str
    customer_id: str
    token: str
    billing_note: str | None


def _client_key(db: Database, data_dir: Path) -> str:
    key_file = data_dir / f"demo-{ENVIRONMENT}-client-key"
    if key_file.exists():
        return key_file.read_text().strip()
    key = create_key(db, ENVIRONMENT, KeyKind.CLIENT)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key


START_EMULATOR = "start the local Stripe emulator in another shell (entitle-stripe-emulator: it connects itself)"


def _billing_note(connected: bool, api_base: str | None) -> str | None:
    """What keeps the checkout from taking a (test) card, said on the page instead of failing in it."""
    if not connected:
        return f"No Stripe integration is connected, so no card can be taken: {START_EMULATOR} and reload."
    if api_base is None:
        return None  # real Stripe (test mode, hopefully): Stripe.js from js.stripe.com
    try:
        httpx.get(f"{api_base}/v1/account", timeout=1)
    except httpx.HTTPError:
        return f"The local Stripe emulator at {api_base} is not answering: {START_EMULATOR} and reload."
    return None


def demo_context(db: Database, box: SecretBox, data_dir: Path, product_id: str) -> DemoContext | None:
    """None without the demo catalog (the page then says to run `entitle demo`)."""
    env = ensure_environment(db, ENVIRONMENT)
    try:
        products.get_product(db, env.pk, product_id)
    except NotFound:
        return None
    with contextlib.suppress(AlreadyExists):
        # With the product's start plan (Free), as a real sign-up would get it.
        journey.provision_customer(
            db,
            env.pk,
            CustomerProvisionWithSubscription(id=DEMO_CUSTOMER, name="Demo Customer", email="demo@example.com"),
        )
    with db.read() as s:
        integration = billing_store.default_integration(s, env.pk)
        api_base = integration.api_base if integration is not None else None
    note = _billing_note(integration is not None, api_base)
    claims = {"sub": DEMO_CUSTOMER, "exp": int((utcnow() + TOKEN_LIFETIME).timestamp())}
    token = jwt.encode(claims, signing_secret(db, box, ENVIRONMENT), algorithm="HS256")
    return DemoContext(product_id, _client_key(db, data_dir), DEMO_CUSTOMER, token, note)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme Notes — Entitle widgets demo</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 0; color: #1f2430; background: #fff; }}
  header {{ padding: 16px 32px; border-bottom: 1px solid #e5e7eb; display: flex; gap: 16px; align-items: center; }}
  header strong {{ font-size: 1.2rem; }}
  main {{ max-width: 1080px; margin: 0 auto; padding: 24px 32px; }}
  section {{ margin-bottom: 48px; }}
  .note {{ background: #fff7e6; border: 1px solid #f5c26b; padding: 12px 16px; border-radius: 8px; }}
  code {{ background: #f3f4f6; padding: 1px 4px; border-radius: 4px; }}
</style>
<script type="module" src="/widgets/v1/entitle.js"></script>
</head>
<body>
<header><strong>Acme Notes</strong><span>a sample app embedding Entitle's widgets</span></header>
<main>
{body}
</main>
</body>
</html>
"""

WIDGETS = """{note}
<section>
  <h2>Pricing</h2>
  <entitle-pricing-table id="pricing" product-id="{product}" {attrs}></entitle-pricing-table>
</section>
<section>
  <h2>Checkout</h2>
  <entitle-checkout id="checkout" {attrs}></entitle-checkout>
</section>
<section>
  <h2>Your account</h2>
  <entitle-customer-portal id="portal" product-id="{product}" {attrs}></entitle-customer-portal>
</section>
<script type="module">
  const pricing = document.getElementById("pricing");
  const checkout = document.getElementById("checkout");
  const portal = document.getElementById("portal");
  // The host app decides what choosing a plan does: here, open the checkout below for paid plans.
  pricing.addEventListener("entitle:plan-selected", (event) => {{
    const {{ planId, billingPeriod, intention }} = event.detail;
    if (intention === "contact-sales") {{ alert("Our sales team will get in touch."); return; }}
    checkout.setAttribute("billing-period", billingPeriod);
    checkout.setAttribute("plan-id", planId);
    checkout.scrollIntoView({{ behavior: "smooth" }});
  }});
  portal.addEventListener("entitle:change-plan", () => pricing.scrollIntoView({{ behavior: "smooth" }}));
  checkout.addEventListener("entitle:checkout-completed", () => {{ pricing.refresh(); portal.refresh(); }});
</script>
"""


def render(context: DemoContext | None) -> str:
    if context is None:
        body = (
            '<p class="note">The demo catalog is not loaded: run <code>entitle demo</code> '
            "(<code>make run</code> does) and reload this page.</p>"
        )
        return PAGE.format(body=body)
    attrs = (
        f'client-key="{html.escape(context.client_key)}" customer-id="{html.escape(context.customer_id)}" '
        f'customer-token="{html.escape(context.token)}"'
    )
    note = (
        f'<p class="note" data-testid="demo-note">{html.escape(context.billing_note)}</p>'
        if context.billing_note
        else ""
    )
    return PAGE.format(body=WIDGETS.format(note=note, product=html.escape(context.product_id), attrs=attrs))
