"""`/demo`: a sample application page with the three widgets, for a demo customer on the demo catalog,
so a newcomer sees them work at once.

What a real application's backend does is done here by the server itself: it keeps a client key (saved
under the data directory, like the demo server key) and signs a short-lived token for the demo customer.
`entitle demo` (which `make run` runs before serving) makes what the page needs: the demo customer, the
client key file and the environment's signing secret (`prepare`). The page's GET only reads: without
them it says to run `entitle demo`; without a Stripe integration, what to start instead of failing.
The page is for the `development` environment only.
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
from entitle.catalog.products import store as product_store
from entitle.clock import utcnow
from entitle.customers import store as customer_store
from entitle.db import Database
from entitle.environments import store as environment_store
from entitle.environments.access import signing_secret
from entitle.environments.models import KeyKind
from entitle.environments.service import ensure_environment, kept_key
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


def _key_file(data_dir: Path) -> Path:
    return data_dir / f"demo-{ENVIRONMENT}-client-key"


def prepare(db: Database, box: SecretBox, data_dir: Path, product_id: str) -> None:
    """`entitle demo`, after the demo catalog is loaded: the demo customer (on the product's start plan,
    as a real sign-up gets it), the client key the page hands out and the signing secret of its tokens.
    Idempotent: a second run changes nothing, but for a client key that no longer works (made anew)."""
    env = ensure_environment(db, ENVIRONMENT)
    products.get_product(db, env.pk, product_id)  # NotFound: the catalog is not loaded
    with contextlib.suppress(AlreadyExists):
        journey.provision_customer(
            db,
            env.pk,
            CustomerProvisionWithSubscription(id=DEMO_CUSTOMER, name="Demo Customer", email="demo@example.com"),
        )
    kept_key(db, ENVIRONMENT, KeyKind.CLIENT, _key_file(data_dir))
    signing_secret(db, box, ENVIRONMENT)  # made on first use: here, not on the page's GET


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
    """What the page shows, read only; None when `entitle demo` has not prepared it (the page says so)."""
    key_file = _key_file(data_dir)
    if not key_file.exists():
        return None
    with db.read() as s:
        env = environment_store.environment_by_name(s, ENVIRONMENT)
        if env is None or env.signing_secret_encrypted is None:
            return None
        if customer_store.find(s, env.pk, DEMO_CUSTOMER) is None:
            return None
        try:
            product_store.get(s, env.pk, product_id)
        except NotFound:
            return None
        integration = billing_store.default_integration(s, env.pk)
        api_base = integration.api_base if integration is not None else None
        secret = box.decrypt(env.signing_secret_encrypted)
    note = _billing_note(integration is not None, api_base)
    claims = {"sub": DEMO_CUSTOMER, "exp": int((utcnow() + TOKEN_LIFETIME).timestamp())}
    token = jwt.encode(claims, secret, algorithm="HS256")
    return DemoContext(product_id, key_file.read_text().strip(), DEMO_CUSTOMER, token, note)


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
            '<p class="note" data-testid="demo-not-prepared">The demo is not prepared: run '
            "<code>entitle demo</code> (<code>make run</code> does) and reload this page.</p>"
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
