"""What happens to plans and add-ons, announced in the transaction that did it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from entitle.catalog.packages.models import Package
from entitle.domain_events import DomainEvent


@dataclass(frozen=True, kw_only=True)
class PackagePublished(DomainEvent):
    """A plan or add-on version was published (the billing adapter syncs its prices)."""

    package: Package


@dataclass(frozen=True, kw_only=True)
class ParentPlansChanged(DomainEvent):
    """What the plans in `parent_refs` grant to the plans built on them is about to change (a new version
    is published, or their product is archived). Published before the change, so subscribers read the
    plan chains as they were: every live subscription inheriting from one of them changes."""

    parent_refs: Sequence[str]
