"""`POST /api/v1/subscriptions/import`: subscriptions a customer already has elsewhere (another billing
system, a spreadsheet of signed deals) brought in as they are, in one transaction.

Each is provisioned as it stands — its plan, billing period, start date (past dates keep their billing
anchor), add-ons, charges, resource, metadata — without a trial and without waiting for a payment; an
`endDate` schedules its end. With a `billingId` it is linked to that provider subscription (nothing is
created at the provider); without one, a paid subscription is synced like any new one. `integrationId`
chooses the billing integration. An id that already exists is left as it is (an import run twice imports
once); any other problem refuses the whole import (400/404/409 naming the subscription) and writes nothing.
The work is done when the answer comes: its `taskId` names it and there is nothing to wait for.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from entitle.clock import as_utc, utcnow
from entitle.customers import store as customers
from entitle.db import Database
from entitle.errors import EntitleError, FailedPrecondition, InvalidArgument
from entitle.subscriptions import store
from entitle.subscriptions.provisioning import provision_unanswered
from entitle.subscriptions.rules import OPEN
from entitle.subscriptions.schemas import (
    BillingInformation,
    ImportedSubscription,
    SubscriptionImport,
    SubscriptionProvision,
    TrialOverride,
)
from entitle.subscriptions.validation import product_of_plan


def import_subscriptions(db: Database, env_id: int, req: SubscriptionImport) -> str:
    ids = [item.id for item in req.subscriptions]
    if len(set(ids)) != len(ids):
        raise InvalidArgument("subscription ids in one import must be unique")
    with db.transaction() as s:
        for index, item in enumerate(req.subscriptions):
            if store.find(s, env_id, item.id) is not None:
                continue
            try:
                _import_one(s, env_id, item, req.integration_id)
            except EntitleError as exc:
                exc.message = f"subscriptions[{index}] ('{item.id}'): {exc.message}"
                exc.args = (exc.message,)
                raise
    return str(uuid.uuid4())


def _import_one(s: Session, env_id: int, item: ImportedSubscription, integration_id: str | None) -> None:
    now = utcnow()
    if item.end_date is not None and as_utc(item.end_date) <= max(now, as_utc(item.start_date or now)):
        raise InvalidArgument("endDate must be in the future (an ended subscription is not imported)")
    customer = customers.get_live(s, env_id, item.customer_id, for_update=True, write=True)
    product = product_of_plan(s, env_id, item.plan_id)
    held = [
        x
        for x in store.of_customer(s, customer.pk, [st.value for st in OPEN])
        if x.product_pk == product and (x.resource_ref or None) == (item.resource_id or None)
    ]
    if held:
        # Provisioning would replace it (a plan change); an import brings subscriptions in, it ends none.
        raise FailedPrecondition(
            f"customer '{item.customer_id}' already has subscription '{held[0].ref_id}' to this product"
        )
    provision_unanswered(
        s,
        env_id,
        SubscriptionProvision(
            customer_id=item.customer_id,
            plan_id=item.plan_id,
            id=item.id,
            billing_period=item.billing_period,
            start_date=item.start_date,
            cancellation_date=item.end_date,
            addons=item.addons,
            charges=item.charges,
            resource_id=item.resource_id,
            billing_id=item.billing_id,
            metadata=item.metadata,
            await_payment_confirmation=False,
            trial_override_configuration=TrialOverride(is_trial=False),
            billing_information=BillingInformation(integration_id=integration_id) if integration_id else None,
        ),
    )
