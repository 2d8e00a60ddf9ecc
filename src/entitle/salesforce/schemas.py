"""Wire shapes of the Flow actions. Requests extend the API's own models, so a field added to them appears
here (and in the OpenAPI document) without an edit; responses are flat, holding what a Flow writes back."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from entitle.credits.schemas import GrantCreate
from entitle.customers.schemas import CustomerUpdate
from entitle.http.wire import Amount, RefId, WireModel
from entitle.subscriptions.schemas import SubscriptionProvision


class CustomerUpsert(CustomerUpdate):
    """`PUT /api/v1/salesforce/customers/{customerId}`: the fields of `PATCH /api/v1/customers/{id}`."""


class FlowSubscriptionProvision(SubscriptionProvision):
    """`POST /api/v1/subscriptions`'s body, with `id` required: derived from the opportunity, it makes the
    action safe to repeat."""

    id: RefId


class FlowCreditGrant(GrantCreate):
    """`POST /api/v1/credits/grants`'s body, with the grant's `id` chosen by the caller (derived from the
    opportunity line item), so a repeated action grants once."""

    id: Annotated[RefId, Field(max_length=64)]


class FlowCustomerOut(WireModel):
    customer_id: str
    # False when the customer already existed (its fields were updated).
    created: bool
    name: str | None = None
    email: str | None = None
    console_url: str


class FlowSubscriptionOut(WireModel):
    subscription_id: str
    customer_id: str
    plan_id: str
    status: str
    # False when this id was provisioned before: nothing was changed.
    created: bool
    console_url: str
    # A paid plan for a customer billed through Stripe with no payment method on file (status
    # PAYMENT_PENDING): the Stripe Checkout page to send the customer. A sales-led deal usually avoids it with
    # `paymentCollectionMethod: INVOICE`.
    checkout_url: str | None = None


class FlowCreditGrantOut(WireModel):
    grant_id: str
    customer_id: str
    currency_id: str
    amount: Amount
    status: str
    created: bool
    console_url: str


class FlowError(WireModel):
    code: str
    message: str


class FlowErrorEnvelope(WireModel):
    error: FlowError
