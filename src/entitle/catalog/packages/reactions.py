"""How plans and add-ons follow what happens to their product and answer the catalog's questions.

Installed at start-up by `entitle.wiring.install` (the products and features domains sit below this
one and cannot import it)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from entitle.catalog.features import ports as feature_ports
from entitle.catalog.packages import store
from entitle.catalog.packages.events import ParentPlansChanged
from entitle.catalog.packages.models import PLAN
from entitle.catalog.products import ports as product_ports
from entitle.catalog.products.events import ProductArchived, ProductDuplicated, ProductUnarchived
from entitle.domain_events import publish, subscribe


def archive_with_product(s: Session, event: ProductArchived) -> None:
    """Archiving a product archives its plans and add-ons. Subscriptions keep their plan versions, but
    stop inheriting from the archived parents: announced first, while the chains still hold."""
    product = event.product
    plans = [p.ref_id for p in store.current_in_product(s, event.env_id, PLAN, product.pk)]
    publish(s, ParentPlansChanged(env_id=event.env_id, parent_refs=plans))
    store.archive_product_packages(s, event.env_id, product.pk)


def restore_with_product(s: Session, event: ProductUnarchived) -> None:
    """Unarchiving a product brings back what its archive archived. Subscriptions on plans built on the
    restored ones inherit from them again: announced once the chains hold them."""
    plans = store.restore_product_packages(s, event.env_id, event.product.pk)
    publish(s, ParentPlansChanged(env_id=event.env_id, parent_refs=plans))


def duplicate_with_product(s: Session, event: ProductDuplicated) -> None:
    store.duplicate_product_packages(s, event.env_id, event.source.pk, event.copy.pk)


def catalog_users(s: Session, env_id: int, feature_ref: str) -> list[str]:
    return sorted(store.feature_in_use(s, env_id, feature_ref))


def install() -> None:
    subscribe(ProductArchived, archive_with_product)
    subscribe(ProductUnarchived, restore_with_product)
    subscribe(ProductDuplicated, duplicate_with_product)
    product_ports.plan_owner.install(store.plan_product_ref)
    feature_ports.catalog_users.add(catalog_users)
