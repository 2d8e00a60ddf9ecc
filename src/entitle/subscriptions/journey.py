"""A new customer's first subscriptions: the one requested with it (`subscriptionParams`), and for every
other product whose customer journey starts on a free plan or a trial, that plan. One transaction with
the customer itself, so a refused subscription leaves no customer behind."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.catalog.products.models import Product
from entitle.customers import service as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.subscriptions.provisioning import provision_unanswered
from entitle.subscriptions.schemas import CustomerProvisionWithSubscription, SubscriptionProvision, TrialOverride
from entitle.subscriptions.validation import product_of_plan


def provision_customer(db: Database, env_id: int, req: CustomerProvisionWithSubscription) -> customers.CustomerView:
    with db.transaction() as s:
        customer = customers.create_customer(s, env_id, req)
        start_journey(s, env_id, customer, req)
        return customers.view(s, customer)


def start_journey(s: Session, env_id: int, customer: Customer, req: CustomerProvisionWithSubscription) -> None:
    requested_product: int | None = None
    if req.subscription_params is not None:
        params = req.subscription_params.model_dump(exclude_unset=True)
        sub = provision_unanswered(
            s, env_id, SubscriptionProvision(customer_id=customer.ref_id, **params), created=customer
        )
        requested_product = sub.product_pk
    for product in s.scalars(select(Product).where(Product.environment_id == env_id, Product.status == "PUBLISHED")):
        settings = product.product_settings or {}
        setup, plan_ref = settings.get("subscriptionStartSetup"), settings.get("subscriptionStartPlanId")
        if product.pk == requested_product or setup not in ("FREE_PLAN", "TRIAL_PERIOD") or not plan_ref:
            continue
        if product_of_plan(s, env_id, plan_ref) != product.pk:
            continue  # the start plan is not published (yet): nothing to start on
        trial = TrialOverride(is_trial=True) if setup == "TRIAL_PERIOD" else None
        provision_unanswered(
            s,
            env_id,
            SubscriptionProvision(customer_id=customer.ref_id, plan_id=plan_ref, trial_override_configuration=trial),
            created=customer,
        )
