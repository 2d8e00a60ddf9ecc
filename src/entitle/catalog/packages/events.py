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
    """What the plans in `parent_refs` grant to the plans built on them changes (a new version is
    published, their product is archived or unarchived). Published while the plan chains hold those
    plans (before a publish or an archive, after an unarchive), so subscribers find every live
    subscription inheriting from one of them."""

    parent_refs: Sequence[str]
