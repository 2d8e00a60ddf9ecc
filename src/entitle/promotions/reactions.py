"""How promotions answer the features domain below them (installed by `entitle.wiring.install`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from entitle.catalog.features import ports as feature_ports
from entitle.catalog.features.events import FeatureUnarchived
from entitle.clock import utcnow
from entitle.customers.events import entitlements_changed
from entitle.domain_events import subscribe
from entitle.promotions import store


def announce_returned_promotions(s: Session, event: FeatureUnarchived) -> None:
    """A promotion of a customer archived when the feature was (and unarchived since) counts again."""
    for customer_ref in store.promotion_holders(s, event.env_id, event.feature.ref_id, utcnow()):
        entitlements_changed(s, event.env_id, customer_ref)


def promotion_grants(s: Session, env_id: int, feature_ref: str, now: datetime) -> list[str]:
    return [
        f"the promotional entitlement of customer '{ref}'"
        for ref in store.promotion_holders(s, env_id, feature_ref, now)
    ]


def install() -> None:
    subscribe(FeatureUnarchived, announce_returned_promotions)
    feature_ports.customer_grants.add(promotion_grants)
