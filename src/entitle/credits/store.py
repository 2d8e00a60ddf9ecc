"""Credit queries. Writers lock the wallet row first (`locked_wallet`), then read its grants."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, event, exists, func, null, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, object_session

from entitle.catalog.packages.models import PackageCharge, PackageEntitlement
from entitle.clock import utcnow
from entitle.credits.models import Consumption, CreditGrant, CustomCurrency, LedgerEntry, Reservation, Wallet
from entitle.credits.rules import ACTIVE, EXPIRED, RECURRING, SCHEDULED, VOIDED
from entitle.db.pagination import CreatedAtRange, Page, PageRequest, paginate
from entitle.environments.facts import Fact
from entitle.errors import NotFound
from entitle.subscriptions.models import Subscription, SubscriptionEntitlement


def _insert(session: Session, model: Any) -> Any:
    """The dialect's INSERT (for its ON CONFLICT clause)."""
    return (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(model)


# -- currencies ------------------------------------------------------------------------------------------


def find_currency(session: Session, env_id: int, ref_id: str) -> CustomCurrency | None:
    return session.scalars(
        select(CustomCurrency).where(CustomCurrency.environment_id == env_id, CustomCurrency.ref_id == ref_id)
    ).one_or_none()


def get_currency(session: Session, env_id: int, ref_id: str) -> CustomCurrency:
    currency = find_currency(session, env_id, ref_id)
    if currency is None:
        raise NotFound("custom currency", ref_id)
    return currency


def list_currencies(session: Session, env_id: int, page: PageRequest, statuses: list[str]) -> Page[CustomCurrency]:
    stmt = select(CustomCurrency).where(CustomCurrency.environment_id == env_id)
    if "ACTIVE" not in statuses:
        stmt = stmt.where(CustomCurrency.archived_at.is_not(None))
    if "ARCHIVED" not in statuses:
        stmt = stmt.where(CustomCurrency.archived_at.is_(None))
    return paginate(session, stmt, CustomCurrency.pk, page)


# -- wallets ---------------------------------------------------------------------------------------------


def find_wallet(session: Session, customer_pk: int, currency_pk: int, resource_ref: str) -> Wallet | None:
    return session.scalars(
        select(Wallet).where(
            Wallet.customer_pk == customer_pk, Wallet.currency_pk == currency_pk, Wallet.resource_ref == resource_ref
        )
    ).one_or_none()


def insert_wallets(session: Session, env_id: int, keys: Sequence[tuple[int, int, str]]) -> None:
    """Create the wallets (customer pk, currency pk, resource key) that do not exist yet, in one statement;
    one a concurrent writer inserted first is left as it is."""
    now = utcnow()
    values = [
        {
            "environment_id": env_id,
            "customer_pk": customer_pk,
            "currency_pk": currency_pk,
            "resource_ref": resource_ref,
            "created_at": now,
            "updated_at": now,
        }
        for customer_pk, currency_pk, resource_ref in keys
    ]
    index = ["customer_pk", "currency_pk", "resource_ref"]
    session.execute(_insert(session, Wallet).values(values).on_conflict_do_nothing(index_elements=index))


def locked_wallet(session: Session, env_id: int, customer_pk: int, currency_pk: int, resource_ref: str) -> Wallet:
    """The wallet, created if new, locked until the transaction ends: every movement of its grants
    happens under this lock (on SQLite the BEGIN IMMEDIATE transaction already serializes writers).

    A writer reads the instant its movements happen at after this returns: an instant read before could
    precede a grant, an overdraft or a draw another writer committed while this one waited, and the
    answer (a balance at that instant) and the ledger's order would then disagree with the draw."""
    insert_wallets(session, env_id, [(customer_pk, currency_pk, resource_ref)])
    stmt = select(Wallet).where(
        Wallet.customer_pk == customer_pk, Wallet.currency_pk == currency_pk, Wallet.resource_ref == resource_ref
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    wallet = session.scalars(stmt.execution_options(populate_existing=True)).one()
    return wallet


def has_currencies(session: Session, env_id: int) -> bool:
    return session.scalar(select(CustomCurrency.pk).where(CustomCurrency.environment_id == env_id).limit(1)) is not None


def _may_have_soft_limits(env_id: int, customer_pk: int) -> ColumnElement[bool]:
    # A CREDIT entitlement is soft-limited only when a row it is made of says so (inheritance, add-ons and
    # overrides combine the rows' `has_soft_limit`, never make one): a package's of the environment (any
    # version, drafts too) or an override on one of the customer's subscriptions (any).
    return or_(
        exists().where(
            PackageEntitlement.environment_id == env_id,
            PackageEntitlement.entitlement_type == "CREDIT",
            PackageEntitlement.has_soft_limit.is_(True),
        ),
        exists().where(
            Subscription.customer_pk == customer_pk,
            SubscriptionEntitlement.subscription_pk == Subscription.pk,
            SubscriptionEntitlement.entitlement_type == "CREDIT",
            SubscriptionEntitlement.has_soft_limit.is_(True),
        ),
    )


def may_have_soft_limits(session: Session, env_id: int, customer_pk: int) -> bool:
    """False when no currency can be soft-limited for the customer: most customers, at one query instead of
    resolving its subscriptions' entitlements."""
    return bool(session.scalar(select(_may_have_soft_limits(env_id, customer_pk))))


def currencies_and_soft_limits(session: Session, env_id: int, customer_pk: int) -> tuple[bool, bool]:
    """`has_currencies` and `may_have_soft_limits`, in one query."""
    has_any = exists().where(CustomCurrency.environment_id == env_id)
    row = session.execute(select(has_any, _may_have_soft_limits(env_id, customer_pk))).one()
    return bool(row[0]), bool(row[1])


def granted_wallets(session: Session, customer_pk: int, resource_ref: str) -> list[tuple[Wallet, CustomCurrency]]:
    """The customer's wallets for the resource that have had a grant (a wallet is created by the first
    draw even when it costs nothing; it has a balance to show once granted or overdrawn), by currency id."""
    granted = select(CreditGrant.pk).where(CreditGrant.wallet_pk == Wallet.pk).exists()
    stmt = (
        select(Wallet, CustomCurrency)
        .join(CustomCurrency, CustomCurrency.pk == Wallet.currency_pk)
        .where(Wallet.customer_pk == customer_pk, Wallet.resource_ref == resource_ref, granted)
        .order_by(CustomCurrency.ref_id)
    )
    return [(wallet, currency) for wallet, currency in session.execute(stmt).all()]


def wallets_of(session: Session, customer_pk: int, currency_pk: int | None, resource_ref: str) -> list[Wallet]:
    stmt = select(Wallet).where(Wallet.customer_pk == customer_pk, Wallet.resource_ref == resource_ref)
    if currency_pk is not None:
        stmt = stmt.where(Wallet.currency_pk == currency_pk)
    return list(session.scalars(stmt))


# -- grants ----------------------------------------------------------------------------------------------


def open_grants(session: Session, wallet_pk: int) -> list[CreditGrant]:
    """Grants that can still move: scheduled, active, and ended ones that still back a hold (one query:
    every write and every reading of a balance asks it)."""
    stmt = select(CreditGrant).where(
        CreditGrant.wallet_pk == wallet_pk,
        or_(
            CreditGrant.status.in_((SCHEDULED, ACTIVE)),
            and_(CreditGrant.status.in_((EXPIRED, VOIDED)), CreditGrant.reserved != 0),
        ),
    )
    return list(session.scalars(stmt.order_by(CreditGrant.pk).execution_options(populate_existing=True)))


def balance_grants_of(session: Session, wallet_pks: list[int]) -> dict[int, list[CreditGrant]]:
    """`open_grants` of each wallet, in one query, as this session holds them (no reload): what a writer that
    has just flushed its movements computes the wallets' balances from."""
    found: dict[int, list[CreditGrant]] = {}
    if wallet_pks:
        stmt = select(CreditGrant).where(
            CreditGrant.wallet_pk.in_(wallet_pks),
            or_(CreditGrant.status.in_((SCHEDULED, ACTIVE)), CreditGrant.reserved != 0),
        )
        for g in session.scalars(stmt.order_by(CreditGrant.pk)):
            found.setdefault(g.wallet_pk, []).append(g)
    return found


def find_grant(session: Session, env_id: int, ref_id: str) -> CreditGrant | None:
    return session.scalars(
        select(CreditGrant).where(CreditGrant.environment_id == env_id, CreditGrant.ref_id == ref_id)
    ).one_or_none()


def grants_by_pk(session: Session, pks: Iterable[int]) -> dict[int, CreditGrant]:
    wanted = set(pks)
    if not wanted:
        return {}
    return {g.pk: g for g in session.scalars(select(CreditGrant).where(CreditGrant.pk.in_(wanted)))}


def list_grants(
    session: Session, wallet_pks: list[int], page: PageRequest, created_at: CreatedAtRange
) -> Page[CreditGrant]:
    stmt = select(CreditGrant).where(CreditGrant.wallet_pk.in_(wallet_pks))
    stmt = created_at.apply(stmt, CreditGrant.created_at)
    return paginate(session, stmt, CreditGrant.pk, page)


# -- ledger, consumptions, reservations ------------------------------------------------------------------


def list_ledger(
    session: Session,
    wallet_pks: list[int],
    page: PageRequest,
    *,
    event_types: list[str] | None,
    reservation_ref: str | None,
) -> Page[LedgerEntry]:
    stmt = select(LedgerEntry).where(LedgerEntry.wallet_pk.in_(wallet_pks))
    if event_types:
        stmt = stmt.where(LedgerEntry.event_type.in_(event_types))
    if reservation_ref is not None:
        stmt = stmt.where(LedgerEntry.reservation_ref == reservation_ref)
    return paginate(session, stmt, LedgerEntry.pk, page)


def ledger_of(session: Session, wallet_pk: int) -> list[LedgerEntry]:
    return list(session.scalars(select(LedgerEntry).where(LedgerEntry.wallet_pk == wallet_pk).order_by(LedgerEntry.pk)))


def consumed_entries(
    session: Session, env_id: int, wallet_pks: list[int], begin: datetime, end: datetime, *, with_dimensions: bool
) -> list[tuple[str | None, datetime, Decimal, str | None, dict[str, Any] | None]]:
    """What the wallets consumed in [begin, end): feature, instant, (negative) amount, event id and, when
    asked, the dimensions of the consumption that wrote it (None for entries no direct consumption
    wrote). That is their CREDITS_CONSUMED entries and the part of each reservation's release that was
    charged (its hold less what returned), under the event id `reservation:<id>` the part drawn above the
    hold also carries: a reservation's use counts whether it was released in time or after it lapsed."""
    dimensions: Any = Consumption.dimensions if with_dimensions else null()
    stmt = select(
        LedgerEntry.feature_ref, LedgerEntry.timestamp, LedgerEntry.amount, LedgerEntry.event_id, dimensions
    ).where(
        LedgerEntry.wallet_pk.in_(wallet_pks),
        LedgerEntry.event_type == "CREDITS_CONSUMED",
        LedgerEntry.timestamp >= begin,
        LedgerEntry.timestamp < end,
    )
    if with_dimensions:
        stmt = stmt.outerjoin(
            Consumption,
            and_(Consumption.environment_id == env_id, Consumption.idempotency_key == LedgerEntry.event_id),
        )
    rows: list[tuple[str | None, datetime, Decimal, str | None, dict[str, Any] | None]] = [
        (r[0], r[1], r[2], r[3], r[4]) for r in session.execute(stmt)
    ]
    released = select(
        LedgerEntry.feature_ref,
        LedgerEntry.timestamp,
        LedgerEntry.amount,
        LedgerEntry.hold_returned_amount,
        LedgerEntry.reservation_ref,
    ).where(
        LedgerEntry.wallet_pk.in_(wallet_pks),
        LedgerEntry.event_type == "CREDITS_RESERVATION_RELEASED",
        LedgerEntry.timestamp >= begin,
        LedgerEntry.timestamp < end,
    )
    for feature_ref, at, returned, held, reservation_ref in session.execute(released):
        # Amounts are text on SQLite: the charged part is worked out here, not in SQL.
        charged = (held or Decimal(0)) - returned
        if charged > 0:
            rows.append((feature_ref, at, -charged, f"reservation:{reservation_ref}", None))
    return rows


def balance_movements(
    session: Session, wallet_pk: int, since: datetime
) -> tuple[Decimal, list[tuple[datetime, Decimal]]]:
    """The wallet's balance at `since` (its ledger summed up to then) and each movement after, in order."""
    opening = session.execute(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.wallet_pk == wallet_pk, LedgerEntry.timestamp < since
        )
    ).scalar_one()
    rows = session.execute(
        select(LedgerEntry.timestamp, LedgerEntry.amount)
        .where(LedgerEntry.wallet_pk == wallet_pk, LedgerEntry.timestamp >= since)
        .order_by(LedgerEntry.timestamp, LedgerEntry.pk)
    ).all()
    return Decimal(str(opening)), [(r[0], r[1]) for r in rows]


def consumption_by_key(session: Session, env_id: int, key: str) -> Consumption | None:
    return session.scalars(
        select(Consumption).where(Consumption.environment_id == env_id, Consumption.idempotency_key == key)
    ).one_or_none()


def claim_consumption(session: Session, values: dict[str, Any]) -> int | None:
    """Insert a consumption; None when its idempotency key is taken (also by a concurrent commit)."""
    stmt = (
        _insert(session, Consumption)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["environment_id", "idempotency_key"])
    )
    pk = session.execute(stmt.returning(Consumption.pk)).scalar_one_or_none()
    return None if pk is None else int(pk)


def find_reservation(session: Session, env_id: int, ref_id: str) -> Reservation | None:
    return session.scalars(
        select(Reservation)
        .where(Reservation.environment_id == env_id, Reservation.ref_id == ref_id)
        .execution_options(populate_existing=True)
    ).one_or_none()


def active_reservations(session: Session, wallet_pk: int) -> list[Reservation]:
    return list(
        session.scalars(
            select(Reservation)
            .where(Reservation.wallet_pk == wallet_pk, Reservation.status == ACTIVE)
            .order_by(Reservation.pk)
            .execution_options(populate_existing=True)
        )
    )


# -- recurring grants ------------------------------------------------------------------------------------


# Built once (its cache key is memoized on it): every new subscription asks.
_MAY_HAVE_RECURRING_CREDITS = select(
    or_(
        exists().where(
            PackageEntitlement.environment_id == bindparam("env_id"), PackageEntitlement.entitlement_type == "CREDIT"
        ),
        exists().where(
            SubscriptionEntitlement.subscription_pk == bindparam("subscription_pk"),
            SubscriptionEntitlement.entitlement_type == "CREDIT",
        ),
        exists().where(
            PackageCharge.environment_id == bindparam("env_id"),
            PackageCharge.billing_model == "CREDIT_BASED",
            PackageCharge.credit_grant_cadence.is_not(None),
        ),
        exists().where(CreditGrant.subscription_pk == bindparam("subscription_pk")),
    )
)


# Most catalogs grant no credits: each process remembers that (`entitle.environments.facts`). Only a CREDIT
# entitlement or a price with a credit grant cadence written in the environment (a draft's too) breaks it.
NO_CREDIT_CATALOG = Fact("credits.no_credit_catalog")
# The subscriptions a CREDIT override or a credit grant was inserted for in the session's transactions.
_CREDITED = "entitle.credits.credited_subscriptions"


def catalog_grants_credits(session: Session, env_id: int) -> bool:
    """Whether a plan or add-on version of the environment (a draft's too) has a CREDIT entitlement: one
    query at most, none when the process knows the catalog grants no credits."""
    if NO_CREDIT_CATALOG.holds(session, env_id):
        return False
    return bool(
        session.scalar(
            select(
                exists().where(
                    PackageEntitlement.environment_id == env_id, PackageEntitlement.entitlement_type == "CREDIT"
                )
            )
        )
    )


def may_have_recurring_credits(session: Session, env_id: int, subscription_pk: int, *, new: bool = False) -> bool:
    """False when nothing could grant the subscription credits (no CREDIT entitlement nor credit-granting price
    in the environment's catalog, none on the subscription) and it holds no recurring grant: most
    subscriptions, at one query. `new`: the subscription was created in this transaction, so whatever it
    holds was inserted by this session: with a catalog known to grant no credits, no query at all."""
    if new:
        session.flush()  # as the query's autoflush would: what the session made for it is inserted, and seen
        if NO_CREDIT_CATALOG.holds(session, env_id) and subscription_pk not in session.info.get(_CREDITED, ()):
            return False
    found = bool(session.scalar(_MAY_HAVE_RECURRING_CREDITS, {"env_id": env_id, "subscription_pk": subscription_pk}))
    if not found:
        NO_CREDIT_CATALOG.learned(session, env_id)
    return found


def _credited(session: Session | None, subscription_pk: int | None) -> None:
    if session is not None and subscription_pk is not None:
        session.info.setdefault(_CREDITED, set()).add(subscription_pk)


def _override_written(_mapper: Any, _connection: Any, row: SubscriptionEntitlement) -> None:
    if row.entitlement_type == "CREDIT":
        _credited(object_session(row), row.subscription_pk)


def _grant_written(_mapper: Any, _connection: Any, row: CreditGrant) -> None:
    _credited(object_session(row), row.subscription_pk)


def _catalog_entitlement_written(_mapper: Any, _connection: Any, row: PackageEntitlement) -> None:
    session = object_session(row)
    if session is not None and row.entitlement_type == "CREDIT":
        NO_CREDIT_CATALOG.broken(session, row.environment_id)


def _catalog_charge_written(_mapper: Any, _connection: Any, row: PackageCharge) -> None:
    session = object_session(row)
    if session is not None and row.billing_model == "CREDIT_BASED" and row.credit_grant_cadence is not None:
        NO_CREDIT_CATALOG.broken(session, row.environment_id)


for _name in ("after_insert", "after_update"):
    event.listen(SubscriptionEntitlement, _name, _override_written)
    event.listen(CreditGrant, _name, _grant_written)
    event.listen(PackageEntitlement, _name, _catalog_entitlement_written)
    event.listen(PackageCharge, _name, _catalog_charge_written)


def live_recurring_grants(session: Session, subscription_pk: int) -> list[CreditGrant]:
    return list(
        session.scalars(
            select(CreditGrant).where(
                CreditGrant.subscription_pk == subscription_pk,
                CreditGrant.grant_type == RECURRING,
                CreditGrant.status.in_((SCHEDULED, ACTIVE)),
            )
        )
    )


def wallets_by_pk(session: Session, grants: Iterable[CreditGrant]) -> list[Wallet]:
    pks = {g.wallet_pk for g in grants}
    if not pks:
        return []
    return list(session.scalars(select(Wallet).where(Wallet.pk.in_(pks)).order_by(Wallet.pk)))


def period_grants(session: Session, subscription_pk: int, wallet_pk: int, period_start: datetime) -> list[CreditGrant]:
    """Every grant (voided ones too) the subscription's period has had in the wallet."""
    return list(
        session.scalars(
            select(CreditGrant)
            .where(
                CreditGrant.subscription_pk == subscription_pk,
                CreditGrant.wallet_pk == wallet_pk,
                CreditGrant.period_start == period_start,
            )
            .order_by(CreditGrant.pk)
        )
    )


def replaced_period_grants(
    session: Session, sub: Subscription, wallet_pk: int, period_start: datetime, period_end: datetime
) -> list[CreditGrant]:
    """The recurring grants in the wallet, overlapping the period, of the subscriptions `sub` replaced:
    the customer's others to the same product and resource that ended by a plan change."""
    replaced = select(Subscription.pk).where(
        Subscription.customer_pk == sub.customer_pk,
        Subscription.product_pk == sub.product_pk,
        Subscription.pk != sub.pk,
        Subscription.cancel_reason == "UPGRADE_OR_DOWNGRADE",
        (Subscription.resource_ref == sub.resource_ref)
        if sub.resource_ref
        else or_(Subscription.resource_ref.is_(None), Subscription.resource_ref == ""),
    )
    return list(
        session.scalars(
            select(CreditGrant)
            .where(
                CreditGrant.wallet_pk == wallet_pk,
                CreditGrant.grant_type == RECURRING,
                CreditGrant.subscription_pk.in_(replaced),
                CreditGrant.effective_at < period_end,
                CreditGrant.expire_at > period_start,
            )
            .order_by(CreditGrant.pk)
        )
    )
