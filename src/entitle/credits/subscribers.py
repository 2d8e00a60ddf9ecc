"""How credits follow subscriptions: every change of a subscription brings its recurring credits in line
in the same transaction (`recurring.sync_subscription`); a plan change revokes the old subscription's
current grants (the new one grants its own); a cancellation with `prorate: true` revokes them when the
subscription ends; a change of a parent plan the subscription's plan inherits from brings them in line
just before its transaction commits (`inherited.py`). Usage of a credit-priced feature draws credits
through the usage domain's `charge_credits` port (`pricing.charge`). Installed at start-up by
`entitle.wiring.install`; subscriptions and usage never import credits."""

from __future__ import annotations

from sqlalchemy.orm import Session

from entitle.catalog.packages.events import ParentPlansChanged
from entitle.clock import as_utc, utcnow
from entitle.credits import inherited, pricing, recurring
from entitle.domain_events import subscribe
from entitle.subscriptions.events import (
    CancellationRequested,
    SubscriptionCreated,
    SubscriptionEnded,
    SubscriptionUpdated,
)
from entitle.usage import ports as usage_ports

# Changes that leave what a subscription grants as it was: nothing to look at.
_NOTHING_GRANTED_CHANGES = frozenset(
    {
        "CANCELLATION_SCHEDULED",
        "CANCELLATION_WITHDRAWN",
        "UPDATE_SCHEDULED",
        "FUTURE_UPDATE_CANCELED",
        "PAYMENT_FAILED",
    }
)


def grant_created(s: Session, event: SubscriptionCreated) -> None:
    recurring.sync_subscription(s, event.sub, utcnow(), new=True)


def grant_updated(s: Session, event: SubscriptionUpdated) -> None:
    if event.change not in _NOTHING_GRANTED_CHANGES:
        recurring.sync_subscription(s, event.sub, utcnow())


def revoke_replaced(s: Session, event: SubscriptionEnded) -> None:
    """A plan change voids the current grants; any end voids a grant for a period that began when (or
    after) the subscription ended (a renewal that ran at the instant of a trial's or a term's end)."""
    sub = event.sub
    if sub.cancel_reason == "UPGRADE_OR_DOWNGRADE":
        recurring.revoke(s, sub, utcnow())
    elif sub.end_date is not None:
        recurring.revoke(s, sub, utcnow(), periods_from=as_utc(sub.end_date))


def revoke_prorated(s: Session, event: CancellationRequested) -> None:
    if event.prorate:
        recurring.revoke_at(s, event.sub, event.ends_at, utcnow())


def install() -> None:
    usage_ports.charge_credits.install(pricing.charge)
    usage_ports.credit_priced.install(pricing.priced_features)
    subscribe(SubscriptionCreated, grant_created)
    subscribe(SubscriptionUpdated, grant_updated)
    subscribe(SubscriptionEnded, revoke_replaced)
    subscribe(CancellationRequested, revoke_prorated)
    subscribe(ParentPlansChanged, inherited.heard)
    inherited.install()
