"""The Flow actions' use cases. Each is safe to repeat: a Flow re-run after a fault, or run twice on the same
opportunity, finds what the first run made and changes nothing. Every rule stays with its domain: these
functions only choose between the domain's own use cases (create or update, provision or read back)."""

from __future__ import annotations

from entitle.config import console_page_url
from entitle.credits import service as credits
from entitle.credits.schemas import GrantOut
from entitle.customers import service as customers
from entitle.customers.models import Customer
from entitle.customers.schemas import CustomerProvision
from entitle.db import Database
from entitle.errors import AlreadyExists, FailedPrecondition, NotFound
from entitle.salesforce.schemas import (
    CustomerUpsert,
    FlowCreditGrant,
    FlowCreditGrantOut,
    FlowCustomerOut,
    FlowSubscriptionOut,
    FlowSubscriptionProvision,
)
from entitle.subscriptions import provisioning
from entitle.subscriptions import service as subscriptions


class IdReusedWithOtherTerms(FailedPrecondition):
    """A repeated action whose id names something made with other terms: a different deal reusing the id,
    which no retry can fix (409, not retried by the official client)."""

    code = "IDEMPOTENCY_CONFLICT"
    retryable = False


def upsert_customer(db: Database, env_id: int, ref_id: str, req: CustomerUpsert, public_url: str) -> FlowCustomerOut:
    """Create the customer with these fields, or update it with them; a repeat that would change nothing
    writes nothing (no `updatedAt` moved, no `customer.updated` webhook for a Flow run twice)."""
    created = False
    try:
        view = customers.get_customer(db, env_id, ref_id)
        if not _already_applied(view.customer, req):
            view = customers.update_customer(db, env_id, ref_id, req)
    except NotFound:
        try:
            as_new = CustomerProvision.model_validate({**req.model_dump(exclude_unset=True), "id": ref_id})
            view = customers.provision_customer(db, env_id, as_new)
            created = True
        except AlreadyExists:  # made meanwhile by a concurrent run of the same Flow: update it as asked
            view = customers.update_customer(db, env_id, ref_id, req)
    customer = view.customer
    return FlowCustomerOut(
        customer_id=customer.ref_id,
        created=created,
        name=customer.name,
        email=customer.email,
        console_url=console_page_url(public_url, "CUSTOMER", customer.ref_id),
    )


# The plain fields a Flow sends, by the customer's attribute holding each: when every field sent is one of
# these and already holds the value sent, the update is skipped. Anything else (integrations, billing
# information) always goes through the update, which owns its rules.
_PLAIN_FIELDS = {
    "name": "name",
    "email": "email",
    "billing_id": "billing_id",
    "language": "language",
    "timezone": "timezone",
    "metadata": "metadata_",
}


def _already_applied(customer: Customer, req: CustomerUpsert) -> bool:
    sent = req.model_fields_set
    if not sent <= _PLAIN_FIELDS.keys():
        return False
    current = {name: getattr(customer, attribute) for name, attribute in _PLAIN_FIELDS.items()}
    current["metadata"] = dict(current["metadata"] or {})
    wanted = {name: getattr(req, name) for name in sent}
    if "metadata" in wanted:
        wanted["metadata"] = dict(wanted["metadata"] or {})
    return all(current[name] == value for name, value in wanted.items())


def provision_subscription(
    db: Database, env_id: int, req: FlowSubscriptionProvision, public_url: str
) -> FlowSubscriptionOut:
    """Provision the subscription unless one with this id exists; then answer with that one, unchanged."""
    created, checkout_url = True, None
    try:
        view = subscriptions.get_subscription(db, env_id, req.id)
        created = False
    except NotFound:
        try:
            result = provisioning.provision(db, env_id, req)
            view, checkout_url = result.view, result.checkout_url
        except AlreadyExists:
            view = subscriptions.get_subscription(db, env_id, req.id)
            created = False
    if not created and (view.customer_ref, view.sub.plan_ref) != (req.customer_id, req.plan_id):
        raise IdReusedWithOtherTerms(
            f"subscription '{req.id}' exists for customer '{view.customer_ref}' on plan '{view.sub.plan_ref}'; "
            f"it cannot be provisioned again for customer '{req.customer_id}' on plan '{req.plan_id}'"
        )
    return FlowSubscriptionOut(
        subscription_id=view.sub.ref_id,
        customer_id=view.customer_ref,
        plan_id=view.sub.plan_ref,
        status=view.sub.status,
        created=created,
        console_url=console_page_url(public_url, "CUSTOMER", view.customer_ref),
        checkout_url=checkout_url,
    )


def grant_credits(db: Database, env_id: int, req: FlowCreditGrant, public_url: str) -> FlowCreditGrantOut:
    """Grant the credits unless a grant with this id exists; then answer with that one, unchanged."""
    grant = credits.find_grant(db, env_id, req.id)
    created = grant is None
    if grant is None:
        grant = credits.create_grant(db, env_id, req, ref_id=req.id)
    elif _terms(grant) != (req.customer_id, req.currency_id, req.amount):
        raise IdReusedWithOtherTerms(
            f"credit grant '{req.id}' exists with {grant.amount} credits of '{grant.currency_id}' for customer "
            f"'{grant.customer_id}'; it cannot be granted again with other terms"
        )
    return FlowCreditGrantOut(
        grant_id=grant.id,
        customer_id=grant.customer_id,
        currency_id=grant.currency_id,
        amount=grant.amount,
        status=grant.status,
        created=created,
        console_url=console_page_url(public_url, "CUSTOMER", grant.customer_id),
    )


def _terms(grant: GrantOut) -> tuple[str, str, object]:
    return grant.customer_id, grant.currency_id, grant.amount
