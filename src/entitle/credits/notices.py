"""Publishing the credits domain events from what a transaction wrote.

Every movement of a wallet is a ledger entry (`engine.record`), so rather than each use case (and each
one still to come: recurring grants, credit-priced usage) remembering to announce what it did, mapper
hooks note the rows as they are flushed: ledger entries (summed per wallet), grants created, grants whose
status became EXPIRED or VOIDED. Just before the transaction commits, `announce` reads each touched
wallet's balance (under the wallet lock the writer still holds) and publishes the events of
`credits/events.py` in the same transaction. Its `before_commit` hook is inserted ahead of the others,
so the push adapter's own hook (which appends the stream rows) sees what these events recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, attributes, object_session

from entitle.clock import utcnow
from entitle.credits import engine, store
from entitle.credits.events import (
    CreditBalanceChanged,
    CreditBalanceDepleted,
    CreditBalanceLow,
    CreditGrantCreated,
    CreditGrantEnded,
    WalletBalance,
    crossed_low,
    crossed_zero,
)
from entitle.credits.grants import grant_out
from entitle.credits.models import CreditGrant, CustomCurrency, LedgerEntry, Wallet
from entitle.credits.rules import EXPIRED, OVERDRAFT, VOIDED
from entitle.customers.models import Customer
from entitle.db.memo import held_or_read
from entitle.domain_events import publish

_MOVED = "entitle.credits.moved"


@dataclass
class _Moves:
    deltas: dict[int, Decimal] = field(default_factory=dict)  # wallet pk -> net ledger amount
    created: list[CreditGrant] = field(default_factory=list)
    ended: list[CreditGrant] = field(default_factory=list)
    # The wallets (and their customers and currencies) the writer loaded, held here: the identity map
    # only keeps rows something references, and reading them again would cost three queries a commit.
    rows: list[Any] = field(default_factory=list)


def _moved(target: Any, wallet_pk: int) -> _Moves | None:
    session = object_session(target)
    if session is None:
        return None
    moves: _Moves = session.info.setdefault(_MOVED, _Moves())
    if wallet_pk not in moves.deltas:
        moves.deltas[wallet_pk] = Decimal(0)
        wallet = session.identity_map.get(session.identity_key(Wallet, wallet_pk))
        if isinstance(wallet, Wallet):
            moves.rows.append(wallet)
            for model, pk in ((Customer, wallet.customer_pk), (CustomCurrency, wallet.currency_pk)):
                row = session.identity_map.get(session.identity_key(model, pk))
                if row is not None:
                    moves.rows.append(row)
    return moves


def _entry_written(_mapper: Any, _connection: Any, entry: LedgerEntry) -> None:
    moves = _moved(entry, entry.wallet_pk)
    if moves is not None:
        moves.deltas[entry.wallet_pk] += entry.amount


def _grant_created(_mapper: Any, _connection: Any, grant: CreditGrant) -> None:
    moves = _moved(grant, grant.wallet_pk)
    if moves is not None and grant.grant_type != OVERDRAFT:
        moves.created.append(grant)


def _grant_updated(_mapper: Any, _connection: Any, grant: CreditGrant) -> None:
    history = attributes.get_history(grant, "status")
    if history.added and history.added[0] in (EXPIRED, VOIDED) and history.deleted != history.added:
        # Its allowance leaves the wallet even when nothing was left on it (no ledger entry).
        moves = _moved(grant, grant.wallet_pk)
        if moves is not None:
            moves.ended.append(grant)


def announce(session: Session) -> None:
    """Publish what this transaction did to credits (a no-op for one that touched none)."""
    session.flush()  # rows added since the last flush are noted as they are flushed
    moves: _Moves | None = session.info.pop(_MOVED, None)
    if moves is None:
        return
    now = utcnow()
    # Read at once, and held while the events are made (a transaction may move many wallets: a parent
    # plan's publish regrants every subscription inheriting from it).
    grants = [*moves.created, *moves.ended]
    wallets = held_or_read(session, Wallet, set(moves.deltas) | {g.wallet_pk for g in grants})
    customers = held_or_read(session, Customer, {w.customer_pk for w in wallets.values()})
    currencies = held_or_read(session, CustomCurrency, {w.currency_pk for w in wallets.values()})
    for grant in moves.created:
        _publish_grant(grant, wallets, customers, currencies, now, ended=False)
    for grant in moves.ended:
        _publish_grant(grant, wallets, customers, currencies, now, ended=True)
    moved = [pk for pk in sorted(moves.deltas) if pk in wallets]
    balance_grants = store.balance_grants_of(session, moved)
    for pk in moved:
        wallet = wallets[pk]
        customer, currency = customers.get(wallet.customer_pk), currencies.get(wallet.currency_pk)
        if customer is None or currency is None:
            continue
        # Every writer caught the wallet up first (`engine.catch_up`), so no hold has lapsed unapplied.
        balance = engine.balance(balance_grants.get(pk, []), {}, now)
        view = WalletBalance(
            customer_ref=customer.ref_id,
            currency_ref=currency.ref_id,
            resource_ref=wallet.resource_ref or None,
            usage_limit=balance.usage_limit,
            current_usage=balance.current_usage,
            reserved=balance.reserved,
        )
        previous = view.balance - moves.deltas[pk]
        env_id = wallet.environment_id
        publish(session, CreditBalanceChanged(env_id=env_id, wallet=view, previous=previous))
        if crossed_low(previous, view):
            publish(session, CreditBalanceLow(env_id=env_id, wallet=view, previous=previous))
        if crossed_zero(previous, view):
            publish(session, CreditBalanceDepleted(env_id=env_id, wallet=view, previous=previous))


def _publish_grant(
    grant: CreditGrant,
    wallets: dict[int, Wallet],
    customers: dict[int, Customer],
    currencies: dict[int, CustomCurrency],
    now: Any,
    *,
    ended: bool,
) -> None:
    wallet = wallets.get(grant.wallet_pk)
    if wallet is None:
        return
    customer, currency = customers.get(wallet.customer_pk), currencies.get(wallet.currency_pk)
    if customer is None or currency is None:
        return
    session = object_session(grant)
    assert session is not None
    view = grant_out(grant, customer, currency, wallet, now)
    event = CreditGrantEnded if ended else CreditGrantCreated
    publish(session, event(env_id=wallet.environment_id, grant=view))


def _forget(session: Session, *_: Any) -> None:
    session.info.pop(_MOVED, None)


def install() -> None:
    if sa_event.contains(Session, "before_commit", announce):
        return
    sa_event.listen(LedgerEntry, "before_insert", _entry_written)
    sa_event.listen(CreditGrant, "after_insert", _grant_created)
    sa_event.listen(CreditGrant, "before_update", _grant_updated)
    # Ahead of every other before_commit hook: the push adapter's appends the stream rows these
    # events make.
    sa_event.listen(Session, "before_commit", announce, insert=True)
    sa_event.listen(Session, "after_rollback", _forget)
