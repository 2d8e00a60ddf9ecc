"""What happens to features, announced in the transaction that did it."""

from __future__ import annotations

from dataclasses import dataclass

from entitle.catalog.features.models import Feature
from entitle.domain_events import DomainEvent


@dataclass(frozen=True, kw_only=True)
class FeatureChanged(DomainEvent):
    """A feature was created, edited, archived or unarchived: what a check says of it (its name and
    units, whether it exists) may differ, so in-memory snapshots of the environment drop it."""

    feature_ref: str


@dataclass(frozen=True, kw_only=True)
class FeatureUnarchived(FeatureChanged):
    """Nothing granted the feature when it was archived, but a promotion of a customer who was archived
    then (and unarchived since) counts again now (the promotions domain announces it)."""

    feature: Feature
