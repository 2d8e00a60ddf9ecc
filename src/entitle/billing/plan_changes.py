"""Plan changes kept in place at the provider (docs/stripe.md, "Plan changes").

An immediate plan change provisions a new Entitle subscription and ends the one it replaces. When the
replaced one is a paid subscription already at the provider, and the new one will be synced to the same
integration, the provider subscription is not cancelled and made again: its items move to the new plan's
prices, prorated (the unused time credited, the rest of the period charged now), and it stays the same
provider subscription, keeping its billing cycle as the Entitle subscription does.

The provider subscription has one holder at a time, the open subscription billed through it:

- on provisioning (`in_place_of`), the new subscription's link gets the provider subscription's id (still
  PENDING) and its sync job changes the items instead of creating a subscription;
- while the new one waits for its payment, the replaced one stays ACTIVE and holds the provider
  subscription, whose items stay as they were until the change's invoice is paid (a pending update);
- whichever of the two ends first hands the provider subscription to the other (`successor`): its link
  records `movedTo` and nothing is cancelled at the provider; the other's next update brings the provider
  subscription to it (metadata, discount, collection).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from entitle.billing import store
from entitle.billing.models import NO_SYNC_REQUIRED, SUBSCRIPTION, SUCCESS, BillingLink, Integration
from entitle.subscriptions import store as subscriptions
from entitle.subscriptions.models import Subscription
from entitle.subscriptions.rules import OPEN


def in_place_of(session: Session, integration: Integration, replaced: Subscription | None) -> BillingLink | None:
    """The link of the paid subscription a plan change replaces, when its provider subscription can take the
    new plan in place (synced to this integration, not cancelled nor handed over already)."""
    if replaced is None or replaced.pricing_type != "PAID":
        return None
    link = store.link(session, integration.pk, SUBSCRIPTION, replaced.pk)
    if link is None or link.sync_state != SUCCESS or not link.billing_id:
        return None
    if link.details.get("canceled") or link.details.get("movedTo"):
        return None
    return link


def successor(session: Session, integration_pk: int, billing_id: str, ending: Subscription) -> Subscription | None:
    """Another open subscription billed through the provider subscription `ending` is linked to (the other
    side of a plan change in place), to which it passes instead of being cancelled; None when there is none."""
    holders = [
        link.entity_pk
        for link in store.links_by_billing_id(session, integration_pk, SUBSCRIPTION, [billing_id])
        if link.entity_pk != ending.pk and link.sync_state != NO_SYNC_REQUIRED and not link.details.get("movedTo")
    ]
    found = [sub for pk in holders if (sub := subscriptions.by_pk(session, pk)) is not None and sub.status in OPEN]
    return max(found, key=lambda sub: sub.pk) if found else None


def hand_over(link: BillingLink, to: Subscription) -> None:
    """The provider subscription now bills `to`: the ending subscription's link says so (it is not cancelled)."""
    link.details = {**link.details, "movedTo": to.ref_id}


__all__ = ["hand_over", "in_place_of", "successor"]
