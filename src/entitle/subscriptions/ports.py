"""What the subscriptions domain asks of the layers above it, installed at start-up by `entitle.wiring`.

- `billing`: the billing adapter's answers while a subscription is provisioned or changed: which
  integration bills it (`billingInformation.integrationId`), whether it waits for a first payment,
  and whether a Stripe Checkout must collect it (planned in the transaction, opened after the commit:
  the one place a request waits for the provider).
- `current_entitlements`: what a customer is entitled to now, for the provisioning response
  (`entitle.entitlements` answers).
- `contracts_of`: the contract each of some subscriptions is on, shown as its `contractId` (`entitle.contracts`
  answers; one query for a page of subscriptions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from entitle.customers.models import Customer
from entitle.db import Database
from entitle.domain_events import Port
from entitle.subscriptions.models import Subscription


@dataclass(frozen=True)
class CheckoutOptions:
    success_url: str
    cancel_url: str | None
    allow_promo_codes: bool = False
    allow_tax_id_collection: bool = False
    collect_billing_address: bool = False
    collect_phone_number: bool = False
    reference_id: str | None = None


class OpenedCheckout(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def url(self) -> str: ...


class Billing(Protocol):
    def choose_integration(self, s: Session, sub: Subscription, billing_information: Mapping[str, Any] | None) -> None:
        """A new subscription: the integration `integrationId` names must agree with its customer's (400)."""

    def check_integration(self, s: Session, sub: Subscription, billing_information: Mapping[str, Any] | None) -> None:
        """A changed subscription: an `integrationId` must be the one already billing it (400)."""

    def requires_payment(self, s: Session, sub: Subscription) -> bool:
        """A new paid subscription waits for its first payment (PAYMENT_PENDING)."""

    def checkout_integration(self, s: Session, sub: Subscription, *, asked: bool) -> object | None:
        """The integration a Checkout must collect this new subscription through (None: no Checkout)."""

    def default_checkout_options(self) -> CheckoutOptions: ...

    def plan_checkout(self, s: Session, integration: object, sub: Subscription, options: CheckoutOptions) -> None:
        """In the provisioning transaction: record that the Checkout will make the provider subscription."""

    def open_checkout(self, db: Database, sub_pk: int, options: CheckoutOptions) -> OpenedCheckout:
        """After the commit: open the Checkout (raises `BillingProviderError`)."""

    def checkout_failed(self, s: Session, sub: Subscription, message: str) -> None: ...

    def forward_billing_information(
        self, s: Session, sub: Subscription, billing_information: Mapping[str, Any], *, via_checkout: bool, new: bool
    ) -> None:
        """Before the subscription's sync is enqueued: send the `billingInformation` fields the provider
        takes (address, tax ids, tax rates, metadata) on their way, sealed, never kept; 400 when nothing
        can take them."""

    def prefetch_promotion_code(
        self,
        db: Database,
        env_id: int,
        customer_ref: str,
        billing_information: Mapping[str, Any] | None,
        code: str,
        *,
        customer_integration: str | None = None,
    ) -> dict[str, Any]:
        """Before the provisioning transaction: ask the provider about the code, outside any transaction;
        the answer goes into that transaction's `session.info` (opaque here). `customer_integration`: the
        integration a customer created in the same request is linked to."""

    def resolve_promotion_code(self, s: Session, sub: Subscription, code: str) -> str:
        """The Entitle coupon a provider promotion code applies (400 when unknown, expired or not Entitle's)."""

    def preview_promotion_code(
        self, s: Session, env_id: int, payer: Customer, billing_information: Mapping[str, Any] | None, code: str
    ) -> str:
        """`resolve_promotion_code` for a preview: no subscription exists, nothing is kept (after
        `prefetch_promotion_code`, whose answer is in the session's `info`)."""


billing: Port[Billing] = Port("subscriptions.billing")

# (session, subscription pks) -> the contract ref of each that is on one (`contractId`; `entitle.contracts` answers).
ContractsOf = Callable[[Session, Sequence[int]], Mapping[int, str]]
contracts_of: Port[ContractsOf] = Port("subscriptions.contracts_of", default=lambda s, pks: {})

# (session, env_id, customer, resource_ref) -> the customer's entitlement results (wire models).
CurrentEntitlements = Callable[[Session, int, Customer, str | None], list[Any]]
current_entitlements: Port[CurrentEntitlements] = Port("subscriptions.current_entitlements")
