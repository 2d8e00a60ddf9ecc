"""What happens to products, announced in the transaction that did it."""

from __future__ import annotations

from dataclasses import dataclass

from entitle.catalog.products.models import Product
from entitle.domain_events import DomainEvent


@dataclass(frozen=True, kw_only=True)
class ProductArchived(DomainEvent):
    """Published before the product's own row changes: its plans and add-ons are archived with it (the
    packages domain reacts, reading what its plans were first)."""

    product: Product


@dataclass(frozen=True, kw_only=True)
class ProductDuplicated(DomainEvent):
    """`copy` was made from `source`: the packages domain copies the plans and add-ons."""

    source: Product
    copy: Product


@dataclass(frozen=True, kw_only=True)
class ProductUnarchived(DomainEvent):
    """Published after the product's own row is live again: its plans and add-ons that its archive
    archived come back with it (the packages domain reacts)."""

    product: Product
