"""localstripe (GPL-3.0), run as a separate process: never imported by Entitle or by this package."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

# Started with `python -c`: no persistence to the shared pickle, loopback only, no access log.
_LOCALSTRIPE_BOOT = """
import sys
from aiohttp import web
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None

# Stripe's price semantics on localstripe's plans (see "Tiers and quantity transformation" above).
_plan_init = resources.Plan.__init__
def _plan_with_transform(self, *args, transform_quantity=None, **kwargs):
    _plan_init(self, *args, **kwargs)
    self.transform_quantity = transform_quantity
resources.Plan.__init__ = _plan_with_transform

def _stripe_amount(self):
    plan = self.plan
    if plan.usage_type == "metered":
        return 0  # billed in arrears from meter events, never up front
    quantity = self.quantity
    transform = getattr(plan, "transform_quantity", None)
    if transform:
        divide_by = int(transform["divide_by"])
        quantity = -(-quantity // divide_by) if transform.get("round") == "up" else quantity // divide_by
    if plan.billing_scheme == "per_unit":
        return plan.amount * quantity
    def unit(tier): return int(tier.get("unit_amount") or 0)
    def flat(tier): return int(tier.get("flat_amount") or 0)
    def top(tier): return None if tier["up_to"] == "inf" else int(tier["up_to"])
    if plan.tiers_mode == "volume":
        tier = next(t for t in plan.tiers if top(t) is None or quantity <= top(t))
        return quantity * unit(tier) + flat(tier)
    total, floor = 0, 0
    for tier in plan.tiers:
        if quantity <= floor:
            break
        ceiling = quantity if top(tier) is None else min(quantity, top(tier))
        total += (ceiling - floor) * unit(tier) + flat(tier)
        floor = ceiling
    return total
resources.SubscriptionItem._calculate_amount = _stripe_amount

# Subscriptions of several items (a plan and its add-ons): localstripe answers 500 "Not implemented" for
# more than one. The first item goes through localstripe's own checks; the others are checked the same
# way and added before the first invoice is made, so it bills every item.
_subscription_init = resources.Subscription.__init__
def _subscription_with_items(self, *args, items=None, **kwargs):
    if not isinstance(items, list) or len(items) < 2:
        return _subscription_init(self, *args, items=items, **kwargs)
    first, more = items[:1], items[1:]
    for item in more:
        if not isinstance(item, dict) or not isinstance(item.get("plan"), str):
            raise resources.UserError(400, "Bad request")
        quantity = resources.try_convert_to_int(item.get("quantity") or 1)
        if type(quantity) is not int or quantity <= 0:
            raise resources.UserError(400, "Bad request")
        item["quantity"] = quantity
        resources.Plan._api_retrieve(item["plan"])  # 404 for an unknown plan, as for the first
    invoiced = []
    cls = type(self)
    create_invoice = cls._create_invoice
    cls._create_invoice = lambda sub: invoiced.append(sub)  # single-threaded: localstripe is one event loop
    try:
        _subscription_init(self, *args, items=first, **kwargs)
    finally:
        cls._create_invoice = create_invoice
    for item in more:
        self.items._list.append(resources.SubscriptionItem(
            subscription=self.id, plan=item["plan"], quantity=item["quantity"],
            metadata=item.get("metadata"), tax_rates=item.get("tax_rates") or []))
    if invoiced:
        self._create_invoice()
resources.Subscription.__init__ = _subscription_with_items

# Invoiced subscriptions (`collection_method=send_invoice`, `days_until_due`), which localstripe predates:
# as at Stripe, the subscription is active at once and its first invoice is finalized and sent (open,
# `due_date` after the days until due, addressed to the customer's email) instead of charged; it stays
# open until paid — by `POST /v1/invoices/{id}/pay` with `paid_out_of_band=true` (no charge) among others.
_multi_init = resources.Subscription.__init__
def _subscription_collected(self, *args, collection_method=None, days_until_due=None, **kwargs):
    if collection_method not in (None, "charge_automatically", "send_invoice"):
        raise resources.UserError(400, "Bad request")
    if collection_method != "send_invoice":
        return _multi_init(self, *args, **kwargs)
    days = resources.try_convert_to_int(days_until_due)
    if type(days) is not int or days < 0:
        raise resources.UserError(400, "Bad request")
    cls = type(self)
    create_invoice = cls._create_invoice
    def _send_invoice(sub):
        pending = [
            ii for ii in resources.InvoiceItem._api_list_all(None, customer=sub.customer, limit=99)._list
            if ii.invoice is None
        ]
        invoice = resources.Invoice(
            customer=sub.customer,
            subscription=sub.id,
            items=pending + list(sub.items._list),
            default_tax_rates=[tr.id for tr in (sub.default_tax_rates or [])],
            date=sub.current_period_start,
        )
        invoice._finalize()
        invoice.collection_method = "send_invoice"
        invoice.attempted = False
        invoice.due_date = invoice.date + days * 86400
        sub.status = "active"
        resources.schedule_webhook(resources.Event("invoice.sent", invoice))
    cls._create_invoice = _send_invoice
    try:
        _multi_init(self, *args, **kwargs)
    finally:
        cls._create_invoice = create_invoice

resources.Subscription.__init__ = _subscription_collected

_status = resources.Invoice.status
def _invoice_status(self):
    return "paid" if getattr(self, "paid_out_of_band", False) else _status.fget(self)
resources.Invoice.status = property(_invoice_status)

_pay = resources.Invoice._api_pay_invoice.__func__
def _pay_invoice(cls, id, paid_out_of_band=None, **kwargs):
    if not resources.try_convert_to_bool(paid_out_of_band):
        return _pay(cls, id, **kwargs)
    obj = resources.Invoice._api_retrieve(id)
    if obj.status != "open":
        raise resources.UserError(400, "Invoice is already paid" if obj.status == "paid" else "Bad request")
    obj.paid_out_of_band = True
    obj._on_payment_success()
    return obj
resources.Invoice._api_pay_invoice = classmethod(_pay_invoice)
for route in server.app.router.routes():  # the routes were made from the unpatched method
    if route.method == "POST" and route.resource is not None and route.resource.canonical == "/v1/invoices/{id}/pay":
        route._handler = server.api_extra(resources.Invoice._api_pay_invoice, "/v1/invoices/{id}/pay")

# One-off invoices of their own (a paid credit grant's), which localstripe predates: `POST /v1/invoices` with
# `pending_invoice_items_behavior=exclude` makes an empty draft (no pending item of the customer, no line of
# its subscription) that keeps `collection_method`, `days_until_due` and `auto_advance`; an invoice item
# created with `invoice` joins that draft; `POST /v1/invoices/{id}/finalize` opens it (`due_date` after the
# days until due) and `POST /v1/invoices/{id}/mark_uncollectible` gives it up, as at Stripe.
_invoice_create = resources.Invoice._api_create.__func__
def _invoice_create_alone(cls, customer=None, pending_invoice_items_behavior=None, collection_method=None,
                          days_until_due=None, auto_advance=None, **kwargs):
    if pending_invoice_items_behavior != "exclude":
        if collection_method is not None or days_until_due is not None or auto_advance is not None:
            raise resources.UserError(400, "Bad request")
        return _invoice_create(cls, customer=customer,
                               pending_invoice_items_behavior=pending_invoice_items_behavior, **kwargs)
    if collection_method not in (None, "charge_automatically", "send_invoice"):
        raise resources.UserError(400, "Bad request")
    days = resources.try_convert_to_int(days_until_due)
    if collection_method == "send_invoice" and (type(days) is not int or days < 0):
        raise resources.UserError(400, "Bad request")
    listing = resources.InvoiceItem._api_list_all
    resources.InvoiceItem._api_list_all = classmethod(lambda c, url, **kw: resources.List(url))
    try:
        invoice = resources.Invoice(customer=customer, description=kwargs.get("description"),
                                    metadata=kwargs.get("metadata"))
    finally:
        resources.InvoiceItem._api_list_all = listing
    invoice.collection_method = collection_method or "charge_automatically"
    invoice._days_until_due = days
    invoice.due_date = None
    invoice.auto_advance = resources.try_convert_to_bool(auto_advance) if auto_advance is not None else True
    return invoice
resources.Invoice._api_create = classmethod(_invoice_create_alone)

_item_init = resources.InvoiceItem.__init__
def _item_joins_its_invoice(self, *args, invoice=None, **kwargs):
    _item_init(self, *args, invoice=invoice, **kwargs)
    if invoice is not None:
        draft = resources.Invoice._api_retrieve(invoice)
        if draft.status != "draft":
            raise resources.UserError(400, "Bad request")
        if not draft.lines._list:
            draft.currency = self.currency
        draft.lines._list.append(resources.InvoiceLineItem(self))
resources.InvoiceItem.__init__ = _item_joins_its_invoice

def _finalize_invoice(id, **kwargs):
    obj = resources.Invoice._api_retrieve(id)
    if obj.status != "draft":
        raise resources.UserError(400, "Bad request")
    obj._finalize()
    days = getattr(obj, "_days_until_due", None)
    if obj.collection_method == "send_invoice":
        obj.attempted = False
        obj.due_date = obj.date + (days or 0) * 86400
        resources.schedule_webhook(resources.Event("invoice.finalized", obj))
    elif obj.total <= 0:
        obj._on_payment_success()
    return obj

def _mark_uncollectible(id, **kwargs):
    obj = resources.Invoice._api_retrieve(id)
    if obj.status != "open":
        raise resources.UserError(400, "Bad request")
    obj._uncollectible = True
    resources.schedule_webhook(resources.Event("invoice.marked_uncollectible", obj))
    return obj

_status_paid = resources.Invoice.status
def _invoice_status_uncollectible(self):
    return "uncollectible" if getattr(self, "_uncollectible", False) else _status_paid.fget(self)
resources.Invoice.status = property(_invoice_status_uncollectible)

_void = resources.Invoice._api_void_invoice.__func__
def _void_invoice(cls, id, **kwargs):
    obj = resources.Invoice._api_retrieve(id)
    if obj.payment_intent is not None or obj.status not in ("draft", "open"):
        return _void(cls, id)
    obj._draft = False
    obj._voided = True
    obj.status_transitions["voided_at"] = int(resources.time.time())
    resources.schedule_webhook(resources.Event("invoice.voided", obj))
    return obj
resources.Invoice._api_void_invoice = classmethod(_void_invoice)
for route in server.app.router.routes():
    if route.method == "POST" and route.resource is not None and route.resource.canonical == "/v1/invoices/{id}/void":
        route._handler = server.api_extra(resources.Invoice._api_void_invoice, "/v1/invoices/{id}/void")
server.app.router.add_post(
    "/v1/invoices/{id}/finalize", server.api_extra(_finalize_invoice, "/v1/invoices/{id}/finalize")
)
server.app.router.add_post(
    "/v1/invoices/{id}/mark_uncollectible",
    server.api_extra(_mark_uncollectible, "/v1/invoices/{id}/mark_uncollectible"),
)
web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def wait_until_up(url: str, proc: subprocess.Popen[bytes] | None, log: Path | None, deadline: float) -> None:
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            detail = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"localstripe exited with {proc.returncode}: {detail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.05)


def start_localstripe(port: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """localstripe in its own process (`python -c`, so this package never imports it), on 127.0.0.1."""
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", _LOCALSTRIPE_BOOT, str(port)], stdout=log_file, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/js.stripe.com/v3/", proc, log, time.monotonic() + 30)
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        raise
    return proc, base


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
