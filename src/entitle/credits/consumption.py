"""Direct consumption (`POST /api/v1/credits/consumption` and `/async`).

Idempotency follows the usage reports' rules: a key is claimed by inserting its consumption first; the
same key with the same consumption (customer, currency, amount, resource) answers the first result and
draws nothing; the same key with another consumption is refused with 409 IDEMPOTENCY_KEY_REUSED. Keys
are kept for good (not only seven days). A batch is all or nothing: any invalid item refuses the batch.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.clock import as_utc, utcnow
from entitle.credits import engine, rules, store
from entitle.credits.grants import wallet_for
from entitle.credits.models import Consumption, CustomCurrency, Wallet
from entitle.credits.schemas import ConsumptionIn, ConsumptionOut, CreditBalanceOut
from entitle.customers import store as customers
from entitle.db import Database
from entitle.errors import FailedPrecondition
from entitle.events.rules import instant_problem, refusal
from entitle.grants.engine import resource_key


class IdempotencyKeyReused(FailedPrecondition):
    code = "IDEMPOTENCY_KEY_REUSED"


def balance_out(currency: CustomCurrency, balance: engine.Balance, now: datetime) -> CreditBalanceOut:
    return CreditBalanceOut(
        currency_id=currency.ref_id,
        current_usage=balance.current_usage,
        usage_limit=balance.usage_limit,
        timestamp=balance.updated_at or now,
        usage_period_end=balance.period_end,
    )


def _problems(items: list[ConsumptionIn], now: datetime) -> list[dict[str, str]]:
    problems: list[dict[str, str]] = []
    prefix = "consumptions." if len(items) > 1 else ""
    for index, item in enumerate(items):
        where = f"{prefix}{index}." if prefix else ""
        if item.amount <= 0:
            problems.append({"field": f"{where}amount", "problem": "must be greater than 0"})
        elif problem := rules.places_problem(item.amount):
            problems.append({"field": f"{where}amount", "problem": problem})
        if item.created_at is not None and (problem := instant_problem(as_utc(item.created_at), now)):
            problems.append({"field": f"{where}createdAt", "problem": problem})
    return problems


def consume(db: Database, env_id: int, item: ConsumptionIn) -> ConsumptionOut:
    return consume_batch(db, env_id, [item])[0]


def consume_batch(db: Database, env_id: int, items: list[ConsumptionIn]) -> list[ConsumptionOut]:
    if problems := _problems(items, utcnow()):
        raise refusal(problems)
    with db.transaction() as s:
        return [_consume_one(s, env_id, item, index) for index, item in enumerate(items)]


def _consume_one(s: Session, env_id: int, item: ConsumptionIn, index: int) -> ConsumptionOut:
    first = store.consumption_by_key(s, env_id, item.idempotency_key)
    if first is not None:
        return _replay(s, env_id, first, item, index, utcnow())
    customer, currency, wallet = wallet_for(s, env_id, item.customer_id, item.currency_id, item.resource_id)
    # Read once the wallet is ours: a grant or an overdraft another writer committed while we waited
    # started before this instant, so the balance answered below counts what the draw drew on.
    now = utcnow()
    at = as_utc(item.created_at) if item.created_at is not None else now
    claimed = store.claim_consumption(
        s,
        {
            "environment_id": env_id,
            "idempotency_key": item.idempotency_key,
            "wallet_pk": wallet.pk,
            "amount": item.amount,
            "timestamp": at,
            "dimensions": item.dimensions,
            "created_at": now,
            "updated_at": now,
        },
    )
    if claimed is None:  # a concurrent consumption took the key and committed while we waited
        taken = store.consumption_by_key(s, env_id, item.idempotency_key)
        assert taken is not None
        return _replay(s, env_id, taken, item, index, now)
    grants = engine.catch_up(s, wallet, now)
    engine.consume(s, wallet, grants, item.amount, at, event_id=item.idempotency_key)
    s.flush()
    return ConsumptionOut(
        customer_id=customer.ref_id,
        currency_id=currency.ref_id,
        amount=item.amount,
        timestamp=at,
        resource_id=item.resource_id,
        credit=balance_out(currency, engine.balance(grants, {}, now), now),
    )


def _replay(
    s: Session, env_id: int, first: Consumption, item: ConsumptionIn, index: int, now: datetime
) -> ConsumptionOut:
    wallet = s.get(Wallet, first.wallet_pk)
    assert wallet is not None
    customer = customers.find(s, env_id, item.customer_id)
    currency = store.find_currency(s, env_id, item.currency_id)
    differs = [
        name
        for name, same in (
            ("customerId", customer is not None and customer.pk == wallet.customer_pk),
            ("currencyId", currency is not None and currency.pk == wallet.currency_pk),
            ("amount", Decimal(item.amount) == first.amount),
            ("resourceId", resource_key(item.resource_id) == wallet.resource_ref),
        )
        if not same
    ]
    if differs:
        where = f"consumptions.{index}.idempotencyKey" if index else "idempotencyKey"
        raise IdempotencyKeyReused(
            f"idempotencyKey '{item.idempotency_key}' was already used for another consumption "
            f"({', '.join(differs)} differ); nothing was consumed",
            details=[{"field": where, "problem": f"{', '.join(differs)} differ"}],
        )
    assert customer is not None and currency is not None
    grants = store.open_grants(s, wallet.pk)
    lapsed = engine.lapsed_holds(store.active_reservations(s, wallet.pk), now)
    return ConsumptionOut(
        customer_id=customer.ref_id,
        currency_id=currency.ref_id,
        amount=first.amount,
        timestamp=first.timestamp,
        resource_id=wallet.resource_ref or None,
        credit=balance_out(currency, engine.balance(grants, lapsed, now), now),
    )
