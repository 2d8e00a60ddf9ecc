from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.catalog.packages.models import Package
from entitle.catalog.products.models import Product
from entitle.contracts.models import Contract, ContractSubscription
from entitle.errors import NotFound


def find(s: Session, env_id: int, ref: str, *, for_update: bool = False) -> Contract | None:
    stmt = select(Contract).where(Contract.environment_id == env_id, Contract.ref_id == ref)
    return s.scalars(stmt.with_for_update() if for_update else stmt).one_or_none()


def get(s: Session, env_id: int, ref: str, *, for_update: bool = False) -> Contract:
    found = find(s, env_id, ref, for_update=for_update)
    if found is None:
        raise NotFound("contract", ref)
    return found


def of_environment(s: Session, env_id: int, customer_pk: int | None = None, name: str | None = None) -> list[Contract]:
    stmt = select(Contract).where(Contract.environment_id == env_id)
    if customer_pk is not None:
        stmt = stmt.where(Contract.customer_pk == customer_pk)
    if name is not None:
        stmt = stmt.where(Contract.name == name)
    return list(s.scalars(stmt.order_by(Contract.pk)))


def members(s: Session, contract_pks: list[int]) -> dict[int, list[int]]:
    """The subscriptions (by pk) on each contract, in the order they joined."""
    found: dict[int, list[int]] = defaultdict(list)
    if contract_pks:
        rows = s.scalars(
            select(ContractSubscription)
            .where(ContractSubscription.contract_pk.in_(contract_pks))
            .order_by(ContractSubscription.pk)
        )
        for row in rows:
            found[row.contract_pk].append(row.subscription_pk)
    return found


def contract_of_subscriptions(s: Session, subscription_pks: list[int]) -> dict[int, Contract]:
    if not subscription_pks:
        return {}
    rows = s.execute(
        select(ContractSubscription.subscription_pk, Contract)
        .join(Contract, Contract.pk == ContractSubscription.contract_pk)
        .where(ContractSubscription.subscription_pk.in_(subscription_pks))
    )
    return {pk: contract for pk, contract in rows}


def replace_members(s: Session, contract: Contract, subscription_pks: list[int]) -> None:
    for row in s.scalars(select(ContractSubscription).where(ContractSubscription.contract_pk == contract.pk)):
        s.delete(row)
    s.flush()
    for pk in subscription_pks:
        s.add(ContractSubscription(environment_id=contract.environment_id, contract_pk=contract.pk, subscription_pk=pk))
    s.flush()


@dataclass(frozen=True)
class DisplayNames:
    plans: dict[int, str]
    products: dict[int, str]


def display_names(s: Session, plan_pks: Iterable[int], product_pks: Iterable[int]) -> DisplayNames:
    """The display names of the plan versions and products the contracts' subscriptions are on."""
    plans, products = sorted(set(plan_pks)), sorted(set(product_pks))
    found_plans: dict[int, str] = {}
    found_products: dict[int, str] = {}
    if plans:
        for pk, name in s.execute(select(Package.pk, Package.display_name).where(Package.pk.in_(plans))):
            found_plans[pk] = name
    if products:
        for pk, name in s.execute(select(Product.pk, Product.display_name).where(Product.pk.in_(products))):
            found_products[pk] = name
    return DisplayNames(found_plans, found_products)
