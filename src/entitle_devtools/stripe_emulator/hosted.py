"""The pages Stripe hosts, emulated: a Checkout page whose "Pay" button completes the session, a
billing-portal page, an invoice's hosted page and PDF (localstripe's invoices link none: the stand-in adds
`invoice_pdf` and `hosted_invoice_url` to the invoices it returns); and the signed webhooks the stand-in
sends for what it completes itself.

Pay does what Stripe does when a customer pays a subscription-mode Checkout Session: a card (the test
Visa, 4242...) is attached to the session's customer and made its default, the subscription is created
with the session's line items and `subscription_data.metadata` (through the stand-in, so Prices, tax and
several items work as for any other subscription), the session becomes `complete` / `paid` with the
subscription's id, and `checkout.session.completed` is sent, signed with each endpoint's secret, to the
endpoints configured with `webhook_endpoints` (the launcher configures Entitle's). The browser is then sent
to the session's `success_url`.
"""

from __future__ import annotations

import html
import json
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import stripe
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from entitle_devtools.stripe_emulator.wire import _rand

TEST_CARD = {"number": "4242424242424242", "exp_month": "12", "exp_year": "2040", "cvc": "123"}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>{title}</h1>
{body}
</body></html>
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status)


class HostedPages:
    """Mixed into the stand-in: `checkout_sessions`, `checkout_auth`, `portal_sessions`, `public_base` and
    `webhook_endpoints` are its state."""

    checkout_sessions: dict[str, dict[str, Any]]
    checkout_auth: dict[str, str]
    checkout_requests: dict[str, dict[str, Any]]
    portal_sessions: dict[str, dict[str, Any]]
    webhook_endpoints: list[tuple[str, str]]
    public_base: str

    async def checkout_page(self, request: Request) -> Response:
        session = self.checkout_sessions.get(request.path_params["session_id"])
        if session is None:
            return _page("Checkout", "<p>No such checkout session.</p>", 404)
        if session["status"] != "open":
            return _page("Checkout", f"<p>This checkout session is {html.escape(session['status'])}.</p>", 410)
        total = (session.get("amount_total") or 0) / 100
        currency = html.escape(str(session.get("currency") or "").upper())
        items = len(self.checkout_requests[session["id"]].get("line_items") or [])
        body = (
            f"<p>Customer <code>{html.escape(str(session.get('customer')))}</code>, "
            f"{items} item(s), {total:.2f} {currency} now.</p>"
            f'<form method="post" action="/emulated/checkout/{html.escape(session["id"])}/pay">'
            f"<p>Card: test Visa ending 4242 (the emulator's)</p>"
            f'<button type="submit">Pay</button></form>'
        )
        return _page("Checkout (Stripe emulator)", body)

    async def checkout_pay(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        session = self.checkout_sessions.get(session_id)
        if session is None or session["status"] != "open":
            return _page("Checkout", "<p>This checkout session cannot be paid.</p>", 410)
        auth, asked = self.checkout_auth[session_id], self.checkout_requests[session_id]
        headers = {"authorization": auth, "content-type": "application/x-www-form-urlencoded"}
        async with httpx.AsyncClient(base_url=self.public_base, headers=headers, timeout=30) as api:

            async def post(path: str, params: dict[str, Any]) -> dict[str, Any]:
                return _ok(await api.post(path, content=urlencode(_form(params))))

            customer = session["customer"]
            method = await post("/v1/payment_methods", {"type": "card", "card": TEST_CARD})
            await post(f"/v1/payment_methods/{method['id']}/attach", {"customer": customer})
            await post(f"/v1/customers/{customer}", {"invoice_settings": {"default_payment_method": method["id"]}})
            subscription: dict[str, Any] = {
                "customer": customer,
                "items": asked.get("line_items") or [],
                "metadata": (asked.get("subscription_data") or {}).get("metadata") or {},
                "default_payment_method": method["id"],
            }
            if session["automatic_tax"]["enabled"]:
                subscription["automatic_tax"] = {"enabled": "true"}
            # The session's discount becomes the subscription's (a promotion code is redeemed then).
            discounts = [{k: v for k, v in d.items() if v} for d in session.get("discounts") or []]
            if discounts:
                subscription["discounts"] = discounts
            created = await post("/v1/subscriptions", subscription)
        session.update(
            status="complete",
            payment_status="paid",
            subscription=created["id"],
            invoice=created.get("latest_invoice"),
            url=None,
        )
        await self.send_event("checkout.session.completed", session)
        target = str(session.get("success_url") or "/").replace("{CHECKOUT_SESSION_ID}", session_id)
        return RedirectResponse(target, status_code=303)

    async def portal_page(self, request: Request) -> Response:
        session = self.portal_sessions.get(request.path_params["session_id"])
        if session is None:
            return _page("Billing portal", "<p>No such portal session.</p>", 404)
        back = html.escape(str(session.get("return_url") or "/"))
        body = (
            f"<p>Customer <code>{html.escape(session['customer'])}</code>, configuration "
            f'<code>{html.escape(session["configuration"])}</code>.</p><p><a href="{back}">Return</a></p>'
        )
        return _page("Billing portal (Stripe emulator)", body)

    def with_invoice_links(self, invoice: dict[str, Any]) -> None:
        """Stripe's invoices link their PDF and hosted page; localstripe's link neither, so the emulator
        serves both (what a customer portal links to)."""
        base = f"{self.public_base}/emulated/invoices/{invoice['id']}"
        invoice["invoice_pdf"] = invoice.get("invoice_pdf") or f"{base}/pdf"
        invoice["hosted_invoice_url"] = invoice.get("hosted_invoice_url") or base

    async def invoice_page(self, request: Request) -> Response:
        invoice_id = html.escape(request.path_params["invoice_id"])
        return _page(f"Invoice {invoice_id} (Stripe emulator)", f'<p><a href="{invoice_id}/pdf">Download PDF</a></p>')

    async def invoice_pdf(self, request: Request) -> Response:
        """A one-page PDF naming the invoice: enough for a link to open a document."""
        return Response(_pdf(f"Invoice {request.path_params['invoice_id']}"), media_type="application/pdf")

    async def send_event(self, event_type: str, obj: dict[str, Any]) -> None:
        """A Stripe event, signed as Stripe signs it, to every configured endpoint (failures are printed:
        Stripe would retry, the emulator does not)."""
        event = {
            "id": f"evt_{_rand(24)}",
            "object": "event",
            "api_version": stripe.api_version,
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": len(self.webhook_endpoints),
            "type": event_type,
            "data": {"object": obj},
        }
        payload = json.dumps(event)
        async with httpx.AsyncClient(timeout=30) as client:
            for url, secret in self.webhook_endpoints:
                header = stripe.WebhookSignature.generate_signature_header(payload, secret)
                try:
                    resp = await client.post(
                        url, content=payload, headers={"Stripe-Signature": header, "Content-Type": "application/json"}
                    )
                    if resp.status_code >= 300:
                        print(f"stripe emulator: {event_type} to {url} answered {resp.status_code}: {resp.text[:200]}")
                except httpx.HTTPError as exc:
                    print(f"stripe emulator: {event_type} to {url} failed: {exc}")


def _ok(resp: httpx.Response) -> dict[str, Any]:
    if resp.status_code >= 400:
        raise RuntimeError(f"{resp.request.method} {resp.request.url.path}: {resp.status_code} {resp.text[:500]}")
    body: dict[str, Any] = resp.json()
    return body


def _form(params: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's bracketed form encoding of nested parameters."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, dict):
            pairs += _form(value, name)
        elif isinstance(value, list):
            for i, entry in enumerate(value):
                pairs += _form(entry, f"{name}[{i}]") if isinstance(entry, dict) else [(f"{name}[{i}]", str(entry))]
        else:
            pairs.append((name, str(value)))
    return pairs


def _pdf(text: str) -> bytes:
    """A minimal well-formed PDF (one page, one line of text), with its cross-reference table."""
    line = text.replace("\\", "").replace("(", "").replace(")", "")[:80]
    stream = f"BT /F1 14 Tf 36 100 Td ({line}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 400 144] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out
