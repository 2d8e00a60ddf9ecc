"""Plans and add-ons storage. (Stub: the packages work fills these in.)"""

from __future__ import annotations

from sqlalchemy.orm import Session


def feature_in_use(session: Session, env_id: int, feature_ref: str) -> set[str]:
    return set()


def plan_product_ref(session: Session, env_id: int, plan_ref: str) -> str | None:
    return None


def archive_product_packages(session: Session, env_id: int, product_pk: int) -> None:
    return None


def duplicate_product_packages(session: Session, env_id: int, source_product_pk: int, target_product_pk: int) -> None:
    return None
