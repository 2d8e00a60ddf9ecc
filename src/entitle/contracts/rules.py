"""What a contract may hold and what state it is in, as pure functions.

A contract groups one customer's subscriptions that are sold rather than self-served: custom-priced (a
CUSTOM plan, or price overrides) or billed outside Entitle's provider sync (a `billingId` naming a provider
subscription made elsewhere). It holds at most one subscription per product and one currency, and a
subscription is on at most one contract.

Its state follows its subscriptions: archived -> CANCELED; no subscription -> DRAFT; any subscription
granting access (ACTIVE, IN_TRIAL) -> ACTIVE; otherwise any not started yet (NOT_STARTED, PAYMENT_PENDING)
-> DRAFT; all ended -> END_BILLING.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from entitle.errors import InvalidArgument

STATES: tuple[str, ...] = ("DRAFT", "ACTIVE", "CANCELED", "END_BILLING")
_LIVE = frozenset({"ACTIVE", "IN_TRIAL"})
_WAITING = frozenset({"NOT_STARTED", "PAYMENT_PENDING"})


@dataclass(frozen=True)
class Member:
    """What the rules need of a subscription."""

    ref: str
    customer_ref: str
    product_ref: str
    status: str
    currency: str | None
    custom_priced: bool
    externally_billed: bool


def state_of(statuses: Sequence[str], archived: bool) -> str:
    if archived:
        return "CANCELED"
    if not statuses:
        return "DRAFT"
    if any(status in _LIVE for status in statuses):
        return "ACTIVE"
    if any(status in _WAITING for status in statuses):
        return "DRAFT"
    return "END_BILLING"


def check_members(customer_ref: str, members: Sequence[Member]) -> str | None:
    """Refuse (400) a set of subscriptions a contract cannot hold; their one currency (None: none priced)."""
    refs = [m.ref for m in members]
    if len(set(refs)) != len(refs):
        raise InvalidArgument("a subscription appears twice in the contract")
    products: dict[str, str] = {}
    currencies: dict[str, str] = {}
    for member in members:
        if member.customer_ref != customer_ref:
            raise InvalidArgument(
                f"subscription '{member.ref}' belongs to customer '{member.customer_ref}', not '{customer_ref}'"
            )
        if member.status not in _LIVE | _WAITING:
            raise InvalidArgument(f"subscription '{member.ref}' is {member.status}: only open subscriptions join")
        if not (member.custom_priced or member.externally_billed):
            raise InvalidArgument(
                f"subscription '{member.ref}' is neither custom-priced (a CUSTOM plan or price overrides) nor "
                "billed outside Entitle (a billingId): a contract holds sales-led subscriptions only"
            )
        other = products.setdefault(member.product_ref, member.ref)
        if other != member.ref:
            raise InvalidArgument(
                f"subscriptions '{other}' and '{member.ref}' are both on product '{member.product_ref}': a contract "
                "holds one subscription per product"
            )
        if member.currency is not None:
            currencies.setdefault(member.currency, member.ref)
    if len(currencies) > 1:
        named = ", ".join(f"'{ref}' ({currency})" for currency, ref in currencies.items())
        raise InvalidArgument(f"a contract is in one currency; its subscriptions are not: {named}")
    return next(iter(currencies), None)
