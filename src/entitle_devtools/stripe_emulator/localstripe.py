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
    self._days_until_due = days  # its later invoices (a change's) are sent too

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
    discard = getattr(obj, '_when_voided', None)
    if discard is not None and obj.status == "open":
        # A subscription update's invoice (a pending update waits for it): voided, the update is discarded and
        # the subscription goes on as it was (localstripe would take it for the first invoice and expire it).
        obj._when_voided = obj._when_paid = None
        discard()
        if obj.payment_intent is not None:
            resources.PaymentIntent._api_cancel(obj.payment_intent)
        obj._draft = False
        obj._voided = True
        obj.status_transitions["voided_at"] = int(resources.time.time())
        resources.schedule_webhook(resources.Event("invoice.voided", obj))
        return obj
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

# Subscription updates that change items, prorated as Stripe prorates them (localstripe holds one item and
# credits the whole previous invoice): each changed item's old amount is credited for the unused fraction of
# the period and its new amount charged for the remaining fraction, fractions in seconds from
# `proration_date` (the update's instant by default), each line rounded to whole minor units (half away
# from zero). `proration_behavior`: `create_prorations` (Stripe's default) leaves the lines pending for the
# next invoice, `always_invoice` invoices and charges them now, `none` makes none. A change of interval
# restarts the cycle at the change (the anchor moves there) and invoices at once: the unused time credited,
# the new period charged in full. `payment_behavior=pending_if_incomplete`: when that invoice is not paid
# the items stay as they were, the change waits in `pending_update` (applied if the invoice is paid later)
# and the invoice stays open; otherwise an unpaid invoice leaves the subscription past_due.
import datetime as _dt
import decimal as _decimal
from dateutil.relativedelta import relativedelta as _relativedelta

_INTERVAL_MONTHS = {'month': 1, 'year': 12}

def _restore_items(sub, state):
    # Put back the items (their prices and quantities) and the anchor a subscription had (`state`, as read
    # before or after an update).
    listed, states, anchor = state
    sub.items._list[:] = listed
    for si, plan, quantity in states:
        si.plan, si.quantity = plan, quantity
    sub._anchor = anchor
    sub.quantity = sub.items._list[0].quantity

def _cycle_at(anchor, interval, count, when):
    # The period [start, end) of a cycle anchored at `anchor` that holds `when` (no drift at month ends).
    base = _dt.datetime.fromtimestamp(anchor, tz=_dt.timezone.utc)
    months = _INTERVAL_MONTHS.get(interval)
    def at(k):
        if months is None:
            days = {'day': 1, 'week': 7}[interval] * count * k
            return int((base + _dt.timedelta(days=days)).timestamp())
        return int((base + _relativedelta(months=months * count * k)).timestamp())
    k = 0
    while at(k + 1) <= when:
        k += 1
    return at(k), at(k + 1)

def _item_period(self):
    if self._subscription:
        sub = resources.Subscription._api_retrieve(self._subscription)
        start = getattr(sub, '_anchor', None) or sub.start_date
    else:
        start = int(resources.time.time())
    begin, end = _cycle_at(start, self.plan.interval, self.plan.interval_count or 1, start)
    return dict(start=begin, end=end)
resources.SubscriptionItem._current_period = _item_period

def _minor(amount):
    return int(_decimal.Decimal(amount).quantize(_decimal.Decimal(1), rounding=_decimal.ROUND_HALF_UP))

_plain_update = resources.Subscription._update
def _update_items(self, items=None, proration_behavior=None, proration_date=None, payment_behavior=None,
                  metadata=None, **kwargs):
    if metadata is not None:  # localstripe takes the parameter and drops it; Stripe merges ("" unsets a key)
        if type(metadata) is not dict:
            raise resources.UserError(400, 'Bad request')
        merged = {**(self.metadata or {}), **metadata}
        self.metadata = {k: v for k, v in merged.items() if v != ''}
    if items is None:
        return _plain_update(self, **kwargs)
    behavior = proration_behavior or 'create_prorations'
    when = resources.try_convert_to_int(proration_date) if proration_date is not None else int(resources.time.time())
    try:
        assert behavior in ('create_prorations', 'none', 'always_invoice')
        assert payment_behavior in (None, 'allow_incomplete', 'pending_if_incomplete', 'error_if_incomplete')
        assert type(when) is int and when > 1500000000
        assert type(items) is list and all(type(i) is dict for i in items)
    except AssertionError:
        raise resources.UserError(400, 'Bad request')
    held = {si.id: si for si in self.items._list}
    edits = []
    for entry in items:
        deleted = resources.try_convert_to_bool(entry.get('deleted') or False)
        quantity = resources.try_convert_to_int(entry['quantity']) if entry.get('quantity') is not None else None
        if quantity is not None and (type(quantity) is not int or quantity <= 0):
            raise resources.UserError(400, 'Bad request')
        plan = resources.Plan._api_retrieve(entry['plan']) if entry.get('plan') else None
        if entry.get('id'):
            if entry['id'] not in held:
                raise resources.UserError(404, 'No such subscription item: ' + str(entry['id']))
            edits.append((held[entry['id']], plan, quantity, deleted))
        elif plan is None:
            raise resources.UserError(400, 'Bad request')
        else:
            edits.append((None, plan, quantity or 1, False))
    _plain_update(self, **kwargs)
    anchor = getattr(self, '_anchor', None) or self.start_date
    first = self.items._list[0].plan
    start, end = _cycle_at(anchor, first.interval, first.interval_count or 1, when)
    unused = _decimal.Decimal(end - when) / _decimal.Decimal(end - start)
    before = (list(self.items._list), [(si, si.plan, si.quantity) for si in self.items._list], anchor)
    lines = []  # (amount, plan, description)
    for si, plan, quantity, deleted in edits:
        if si is not None:
            old_amount, old_plan = si._calculate_amount(), si.plan
            if deleted:
                self.items._list.remove(si)
                lines.append((-old_amount, old_plan, 'Unused time on ' + str(old_plan.id)))
                continue
            if (plan is None or plan.id == si.plan.id) and (quantity is None or quantity == si.quantity):
                continue
            si.plan = plan or si.plan
            si.quantity = quantity if quantity is not None else si.quantity
            lines.append((-old_amount, old_plan, 'Unused time on ' + str(old_plan.id)))
            lines.append((si._calculate_amount(), si.plan, 'Remaining time on ' + str(si.plan.id)))
        else:
            si = resources.SubscriptionItem(subscription=self.id, plan=plan.id, quantity=quantity)
            self.items._list.append(si)
            lines.append((si._calculate_amount(), si.plan, 'Remaining time on ' + str(si.plan.id)))
    if not lines:
        return
    self.quantity = self.items._list[0].quantity
    new_first = self.items._list[0].plan
    restarts = (new_first.interval, new_first.interval_count) != (first.interval, first.interval_count)
    if behavior != 'none':
        for amount, plan, description in lines:
            if restarts and amount > 0:
                continue  # the new period is charged in full on the invoice below
            resources.InvoiceItem(
                amount=_minor(amount * unused), currency=plan.currency, customer=self.customer,
                subscription=self.id, plan=plan.id, proration=True, description=description,
                period_start=when, period_end=end)
    if restarts:
        self._anchor = when
    self.pending_update = None
    if not restarts and behavior != 'always_invoice':
        return
    invoice = resources.Invoice(
        customer=self.customer, subscription=self.id, date=when,
        items=list(self.items._list) if restarts else [],
        default_tax_rates=[tr.id for tr in (self.default_tax_rates or [])])
    invoice.billing_reason = 'subscription_update'
    invoice._finalize()
    days = getattr(self, '_days_until_due', None)
    if invoice.status == 'paid':
        invoice._on_payment_success()
    elif days is not None:  # an invoiced subscription: the change's invoice is sent, to be paid later
        invoice.collection_method = 'send_invoice'
        invoice.attempted = False
        invoice.due_date = invoice.date + days * 86400
        resources.schedule_webhook(resources.Event('invoice.sent', invoice))
        return
    else:
        try:
            resources.Invoice._api_pay_invoice(invoice.id)
        except resources.UserError:
            pass  # no payment method: the invoice stays open
    if invoice.status == 'paid':
        return
    resources.schedule_webhook(resources.Event('invoice.payment_failed', invoice))
    if payment_behavior in ('pending_if_incomplete', 'error_if_incomplete'):
        changed = (list(self.items._list), [(si, si.plan, si.quantity) for si in self.items._list],
                   getattr(self, '_anchor', None))
        _restore_items(self, before)
        if payment_behavior == 'error_if_incomplete':
            raise resources.UserError(402, 'The payment for the subscription update failed.')
        self.pending_update = {
            'expires_at': when + 23 * 3600,
            'subscription_items': [{'id': si.id if si else None, 'price': plan.id if plan else None,
                                    'quantity': quantity, 'deleted': deleted}
                                   for si, plan, quantity, deleted in edits],
            'billing_cycle_anchor': when if restarts else None,
            'trial_end': None,
            'trial_from_plan': None,
        }
        def _apply_pending(sub=self, changed=changed):
            _restore_items(sub, changed)
            sub.pending_update = None
        def _discard_pending(sub=self):
            sub.pending_update = None
        invoice._when_paid = _apply_pending
        invoice._when_voided = _discard_pending  # a voided invoice cannot be paid: its update is discarded
    else:
        self.status = 'past_due'
resources.Subscription._update = _update_items

_paid_invoice = resources.Invoice._on_payment_success
def _paid_then(self):
    _paid_invoice(self)
    then = getattr(self, '_when_paid', None)
    if then is not None:  # a pending update waits for this invoice: paid, it is applied
        self._when_paid = None
        then()
resources.Invoice._on_payment_success = _paid_then

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
