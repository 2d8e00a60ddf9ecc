"""Contract wire shapes (stigg/types/v1/contract_*.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, model_validator

from entitle.http.wire import RefId, ShortText, Unsupported, WireModel
from entitle.subscriptions.schemas import SubscriptionProvision


class ContractNewSubscription(SubscriptionProvision):
    # A contract is created in one transaction: a Stripe Checkout would be opened after it, for one subscription.
    checkout_options: Unsupported[dict[str, Any]] = None  # type: ignore[assignment]


class ContractSubscriptionIn(WireModel):
    """Exactly one of a new subscription (the provisioning body) or an existing one's id."""

    existing_subscription_id: RefId | None = None
    new_subscription: ContractNewSubscription | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ContractSubscriptionIn:
        if (self.existing_subscription_id is None) == (self.new_subscription is None):
            raise ValueError("give exactly one of newSubscription and existingSubscriptionId")
        return self


# A billing contract at the provider (contract invoices) is not made: `setupBilling: true` is refused; false
# provisions access only, and so does leaving it out (where Stigg's default is true): the official client
# sends the field only when its caller sets it, so refusing an omitted field would refuse every default call,
# and the contract's `billingId` and `billingState` (null) say that no billing contract was made. On update,
# leaving it out changes nothing (as at Stigg).
SetupBilling = Annotated[bool | None, Field(default=None)]


class ContractCreate(WireModel):
    customer_id: RefId
    contract_id: RefId | None = None
    name: ShortText | None = None
    po_number: ShortText | None = None
    activation_start_date: datetime | None = None
    activation_end_date: datetime | None = None
    setup_billing: SetupBilling = None
    subscriptions: list[ContractSubscriptionIn] | None = Field(default=None, max_length=100)


class ContractUpdate(WireModel):
    name: ShortText | None = None
    po_number: ShortText | None = None
    activation_start_date: datetime | None = None
    activation_end_date: datetime | None = None
    setup_billing: SetupBilling = None
    subscription_ids: list[RefId] | None = Field(default=None, max_length=100)


class ContractSubscriptionOut(WireModel):
    subscription_id: str
    plan_display_name: str | None = None
    product_display_name: str | None = None


class ContractOut(WireModel):
    id: str
    contract_id: str
    ref_id: str
    external_id: str
    customer_external_id: str
    name: str | None = None
    po_number: str | None = None
    activation_start_date: datetime | None = None
    activation_end_date: datetime | None = None
    created_at: datetime
    state: str
    # No billing contract is made at a provider (setupBilling is refused): no billing id, state or invoices.
    billing_id: str | None = None
    billing_state: str | None = None
    latest_invoice: dict[str, Any] | None = None
    next_invoice: dict[str, Any] | None = None
    subscriptions: list[ContractSubscriptionOut] = Field(default_factory=list)


__all__ = [
    "ContractCreate",
    "ContractOut",
    "ContractSubscriptionIn",
    "ContractSubscriptionOut",
    "ContractUpdate",
]
