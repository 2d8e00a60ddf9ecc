"""What the customers domain asks of the subscriptions above it (installed by `entitle.wiring`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from entitle.customers.models import Customer
from entitle.customers.schemas import CustomerFields
from entitle.db import Database
from entitle.domain_events import Port
from entitle.errors import InvalidArgument

# The resources (ids, sorted) a customer has held subscriptions for, ended ones included.
HeldResources = Callable[[Session, Customer], list[str]]


def _none(session: Session, customer: Customer) -> list[str]:
    return []


held_resources: Port[HeldResources] = Port("customers.held_resources", default=_none)


class BillingInformationRefused(InvalidArgument):
    """Billing information nobody can take: it is forwarded to a billing provider and never kept, so
    with no integration to forward it to it is refused, not dropped."""

    code = "BILLING_INTEGRATION_REQUIRED"


# Forward billing information for the customer's billing provider (`passthrough.stripe` by wire names;
# empty with `shouldSyncFree`: just make the customer there) in the caller's transaction, through a
# sealed job; raises `BillingInformationRefused` when no connected integration can take it.
ForwardBillingInformation = Callable[[Session, Customer, dict[str, Any]], None]


def _refuse(session: Session, customer: Customer, information: dict[str, Any]) -> None:
    raise BillingInformationRefused(
        "billing information is forwarded to a billing integration and not kept by Entitle, and no billing "
        "integration is connected to this environment: connect one (POST /api/v1/integrations) first"
    )


billing_information: Port[ForwardBillingInformation] = Port("customers.billing_information", default=_refuse)


# A payment method id given with a customer (POST or PATCH /api/v1/customers), read at the billing
# provider that will bill the customer before the request's transaction opens, as attaching one later
# does: its details there (`defaultPaymentMethod` by wire names), or None when no provider bills the
# customer (it is kept as given). Raises 400 (unknown there, another customer's) or 503 (unreachable).
# Arguments: database, environment, customer id, the request, the payment method id.
CheckPaymentMethod = Callable[[Database, int, str, CustomerFields, str], dict[str, Any] | None]


def _unchecked(db: Database, env_id: int, ref_id: str, req: CustomerFields, method: str) -> dict[str, Any] | None:
    return None


payment_method: Port[CheckPaymentMethod] = Port("customers.payment_method", default=_unchecked)
