"""Grants (create, list, void), the ledger listing and the scheduler's catch-up. Grants are immutable:
to change one, void it and grant again."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from entitle.clock import as_utc, utcnow
from entitle.credits import engine, paid, ports, rules, store
from entitle.credits.models import CreditGrant, CustomCurrency, LedgerEntry, Wallet
from entitle.credits.rules import ACTIVE, EXPIRED, OVERDRAFT, PAYMENT_PENDING, SCHEDULED, VOIDED, ZERO
from entitle.credits.schemas import CostOut, GrantCreate, GrantOut, LatestInvoiceOut, LedgerEntryOut
from entitle.customers import store as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.db.pagination import CreatedAtRange, Page, PageRequest
from entitle.errors import FailedPrecondition, InvalidArgument, NotFound
from entitle.grants.engine import resource_key
from entitle.jobs.service import JobContext, register


def grant_out(g: CreditGrant, customer: Customer, currency: CustomCurrency, wallet: Wallet, now: datetime) -> GrantOut:
    status = g.status
    if status in (SCHEDULED, ACTIVE):  # the scheduler may not have run yet: say what is true now
        status = rules.status_at(g.effective_at, g.expire_at, g.voided_at, now)
    elif status == PAYMENT_PENDING and g.expire_at is not None and g.expire_at <= now:
        status = EXPIRED  # unpaid when it was to end (`paid.expire_unpaid` runs then)
    return GrantOut(
        id=g.ref_id,
        customer_id=customer.ref_id,
        currency_id=currency.ref_id,
        display_name=g.display_name,
        amount=g.amount,
        consumed_amount=g.consumed,
        grant_type=g.grant_type,
        status=status,
        priority=g.priority,
        effective_at=g.effective_at,
        expire_at=g.expire_at,
        voided_at=g.voided_at,
        created_at=g.created_at,
        updated_at=g.updated_at,
        comment=g.comment,
        metadata=g.metadata_ or {},
        cost=CostOut(amount=g.cost_amount, currency=g.cost_currency),
        resource_id=wallet.resource_ref or None,
        source_type=g.source_type,
        payment_collection=g.payment_collection,
        invoice_id=g.invoice_ref,
        latest_invoice=LatestInvoiceOut.model_validate(g.latest_invoice) if g.latest_invoice else None,
    )


def _terms(req: GrantCreate, now: datetime) -> tuple[datetime, datetime | None]:
    problems: list[str] = []
    if req.amount <= 0:
        problems.append("amount must be greater than 0")
    elif problem := rules.places_problem(req.amount):
        problems.append(f"amount: {problem}")
    if req.cost is not None and req.cost.amount < 0:
        problems.append("cost.amount must not be negative")
    effective = as_utc(req.effective_at) if req.effective_at is not None else now
    expire = as_utc(req.expire_at) if req.expire_at is not None else None
    if expire is not None and expire <= effective:
        problems.append("expireAt must be after effectiveAt")
    if expire is not None and expire <= now:
        problems.append("expireAt must be in the future")
    if problems:
        raise InvalidArgument("; ".join(problems))
    return effective, expire


def wallet_for(
    s: Session, env_id: int, customer_ref: str, currency_ref: str, resource_ref: str | None, *, for_grant: bool = False
) -> tuple[Customer, CustomCurrency, Wallet]:
    """The locked wallet of a live customer in an existing currency."""
    customer = customers.get_live(s, env_id, customer_ref, write=True)
    currency = store.get_currency(s, env_id, currency_ref)
    if for_grant and currency.archived_at is not None:
        raise FailedPrecondition(f"custom currency '{currency_ref}' is archived; it takes no new grants")
    return customer, currency, store.locked_wallet(s, env_id, customer.pk, currency.pk, resource_key(resource_ref))


def find_grant(db: Database, env_id: int, ref_id: str) -> GrantOut | None:
    """A grant by id (None when there is none): a caller that chose the id asks before granting again."""
    now = utcnow()
    with db.read() as s:
        grant = store.find_grant(s, env_id, ref_id)
        if grant is None:
            return None
        wallet = s.get(Wallet, grant.wallet_pk)
        assert wallet is not None
        customer, currency = s.get(Customer, wallet.customer_pk), s.get(CustomCurrency, wallet.currency_pk)
        assert customer is not None and currency is not None
        return grant_out(grant, customer, currency, wallet, now)


def create_grant(db: Database, env_id: int, req: GrantCreate, *, ref_id: str | None = None) -> GrantOut:
    """`ref_id`: the grant's id when the caller chooses it (a second grant with it is a 409), else a new one.
    An invoiced grant (`paid.invoice_terms`) is written PAYMENT_PENDING with its invoicing enqueued; while
    the request waits (`awaitPaymentConfirmation`, true by default) its invoice is made before the answer."""
    _terms(req, utcnow())  # refused before waiting for the lock
    invoiced = paid.invoice_terms(req)
    made, invoice_now = _create(db, env_id, req, ref_id, invoiced)
    if invoiced is None or invoice_now is None or not invoiced.awaited:
        return made
    if not ports.paid_grants.impl.invoice_now(db, env_id, invoice_now):
        return made  # the provider failed: the invoicing job retries; the answer says PAYMENT_PENDING
    found = find_grant(db, env_id, made.id)
    assert found is not None
    return found


def _create(
    db: Database, env_id: int, req: GrantCreate, ref_id: str | None, invoiced: ports.InvoiceTerms | None
) -> tuple[GrantOut, int | None]:
    """The grant written, and the key of an invoiced one whose invoice the request may make itself (the
    customer is at the provider already: `request_invoice`), else None."""
    with db.transaction() as s:
        customer, currency, wallet = wallet_for(
            s, env_id, req.customer_id, req.currency_id, req.resource_id, for_grant=True
        )
        # Once the wallet is ours (`store.locked_wallet`): a grant starting now starts after what
        # another writer drew while we waited, so the ledger's order is the order of the movements.
        now = utcnow()
        effective, expire = _terms(req, now)
        grants = engine.catch_up(s, wallet, now)
        grant = CreditGrant(
            environment_id=env_id,
            ref_id=ref_id or engine.new_grant_ref(),
            wallet_pk=wallet.pk,
            display_name=req.display_name,
            grant_type=req.grant_type,
            status=SCHEDULED,
            amount=req.amount,
            consumed=ZERO,
            reserved=ZERO,
            priority=req.priority,
            effective_at=effective,
            expire_at=expire,
            comment=req.comment,
            metadata_=dict(req.metadata or {}),
            cost_amount=req.cost.amount if req.cost else ZERO,
            cost_currency=req.cost.currency if req.cost else "usd",
            payment_collection_method=req.payment_collection_method or "NONE",
            created_at=now,
            updated_at=now,
        )
        if invoiced is not None:  # no credits until its invoice is paid (`paid`): nothing starts or ends now
            grant.status, grant.payment_collection = PAYMENT_PENDING, paid.PROCESSING
            grant.collection_terms = paid.kept_terms(invoiced)
            s.add(grant)
            s.flush()
            if expire is not None:
                paid.expire_unpaid_at(s, grant, expire)
            may_invoice_now = ports.paid_grants.impl.request_invoice(s, customer, grant, invoiced)
            return grant_out(grant, customer, currency, wallet, now), grant.pk if may_invoice_now else None
        s.add(grant)
        s.flush()
        grants.append(grant)
        if effective <= now:
            engine.activate(s, wallet, grant, grants, effective)
        else:
            engine.schedule(s, wallet, effective)
        if expire is not None:
            engine.schedule(s, wallet, expire)
        return grant_out(grant, customer, currency, wallet, now), None


def void_grant(db: Database, env_id: int, ref_id: str) -> GrantOut:
    """Idempotent. What the grant still had leaves the balance; what it already gave stays consumed."""
    with db.transaction() as s:
        found = store.find_grant(s, env_id, ref_id)
        if found is None:
            raise NotFound("credit grant", ref_id)
        wallet = s.get(Wallet, found.wallet_pk)
        assert wallet is not None
        customer = s.get(Customer, wallet.customer_pk)
        currency = s.get(CustomCurrency, wallet.currency_pk)
        assert customer is not None and currency is not None
        wallet = store.locked_wallet(s, env_id, wallet.customer_pk, wallet.currency_pk, wallet.resource_ref)
        now = utcnow()  # after the lock: the void comes after whatever drew on the grant meanwhile
        s.refresh(found)  # read again under the wallet's lock: a concurrent void may have committed
        engine.catch_up(s, wallet, now)
        grant = found  # the same object catch_up loaded and moved (one identity map)
        if grant.status == VOIDED:
            return grant_out(grant, customer, currency, wallet, now)
        if grant.grant_type == OVERDRAFT:
            raise FailedPrecondition("an overdraft grant is settled by the next grant; it cannot be voided")
        if grant.status == EXPIRED:
            raise FailedPrecondition(f"credit grant '{ref_id}' has expired; there is nothing left to void")
        waiting = grant.status == PAYMENT_PENDING
        engine.end(s, wallet, grant, VOIDED, now)  # a grant waiting for its payment held nothing: no entry
        grant.updated_at = now
        if waiting:
            grant.payment_collection = paid.NOT_REQUIRED
            ports.paid_grants.impl.cancel_invoice(s, customer, grant)
        return grant_out(grant, customer, currency, wallet, now)


def _wallets(
    s: Session, env_id: int, customer_ref: str, currency_ref: str | None, resource_ref: str | None
) -> tuple[Customer, dict[int, Wallet], dict[int, CustomCurrency]]:
    customer = customers.find(s, env_id, customer_ref)
    if customer is None:
        raise NotFound("customer", customer_ref)
    currency_pk = None
    if currency_ref is not None:
        currency_pk = store.get_currency(s, env_id, currency_ref).pk
    wallets = {w.pk: w for w in store.wallets_of(s, customer.pk, currency_pk, resource_key(resource_ref))}
    currencies = {w.currency_pk: s.get(CustomCurrency, w.currency_pk) for w in wallets.values()}
    return customer, wallets, {pk: c for pk, c in currencies.items() if c is not None}


def list_grants(
    db: Database,
    env_id: int,
    page: PageRequest,
    *,
    customer_ref: str,
    currency_ref: str | None,
    resource_ref: str | None,
    created_at: CreatedAtRange,
) -> Page[GrantOut]:
    """Without `resourceId`, the customer's own grants only (not those of its resources), as Stigg lists them."""
    now = utcnow()
    with db.read() as s:
        customer, wallets, currencies = _wallets(s, env_id, customer_ref, currency_ref, resource_ref)
        found = store.list_grants(s, list(wallets), page, created_at)
        items = [
            grant_out(g, customer, currencies[wallets[g.wallet_pk].currency_pk], wallets[g.wallet_pk], now)
            for g in found.items
        ]
        return Page(items, found.next, found.prev)


def list_ledger(
    db: Database,
    env_id: int,
    page: PageRequest,
    *,
    customer_ref: str,
    currency_ref: str | None,
    resource_ref: str | None,
    event_types: list[str] | None,
    reservation_ref: str | None,
) -> Page[LedgerEntryOut]:
    with db.read() as s:
        customer, wallets, currencies = _wallets(s, env_id, customer_ref, currency_ref, resource_ref)
        found = store.list_ledger(s, list(wallets), page, event_types=event_types, reservation_ref=reservation_ref)
        grants = store.grants_by_pk(s, (e.grant_pk for e in found.items))
        items = [_entry_out(e, customer, wallets[e.wallet_pk], currencies, grants) for e in found.items]
        return Page(items, found.next, found.prev)


def _entry_out(
    e: LedgerEntry,
    customer: Customer,
    wallet: Wallet,
    currencies: dict[int, CustomCurrency],
    grants: dict[int, CreditGrant],
) -> LedgerEntryOut:
    return LedgerEntryOut(
        customer_id=customer.ref_id,
        credit_grant_id=grants[e.grant_pk].ref_id,
        credit_currency_id=currencies[wallet.currency_pk].ref_id,
        amount=e.amount,
        event_type=e.event_type,
        timestamp=e.timestamp,
        event_id=e.event_id,
        feature_id=e.feature_ref,
        resource_id=wallet.resource_ref or None,
        reservation_id=e.reservation_ref,
        hold_returned_amount=e.hold_returned_amount,
        metadata=e.metadata_,
    )


@register(engine.CATCH_UP_JOB)
def _catch_up_job(db: Database, ctx: JobContext) -> None:
    """Due starts, expiries and lapsed holds of one wallet, at the instants they fell due."""
    with db.transaction() as s:
        wallet = s.get(Wallet, int(ctx.payload["wallet"]))
        if wallet is None:
            return  # the customer was deleted with its wallets
        wallet = store.locked_wallet(
            s, wallet.environment_id, wallet.customer_pk, wallet.currency_pk, wallet.resource_ref
        )
        engine.catch_up(s, wallet, utcnow())
