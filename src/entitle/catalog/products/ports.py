"""What the products domain asks of the packages above it (installed by `entitle.wiring`)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from entitle.domain_events import Port

# The product (its ref) of a plan that is not archived; None when there is no such plan.
PlanOwner = Callable[[Session, int, str], str | None]
plan_owner: Port[PlanOwner] = Port("catalog.products.plan_owner")
