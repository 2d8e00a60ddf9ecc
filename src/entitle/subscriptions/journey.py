"""A new customer's first subscriptions: the one requested with it (`subscriptionParams`), and for every
other product whose customer journey starts on a free plan or a trial, that plan. One transaction with
the customer itself, so a refused subscription leaves no customer behind."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from entitle.catalog.products.models import Product
from entitle.customers import service as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.subscriptions import ports
from entitle.subscriptions.provisioning import provision_unanswered
from entitle.subscriptions.schemas import CustomerProvisionWithSubscription, SubscriptionProvision, TrialOverride
from entitle.subscriptions.validation import product_of_plan

# Built once (its cache key is memoized on it): every new customer reads them.
_PUBLISHED_PRODUCTS = select(Product).where(
    Product.environment_id == bindparam("env_id"), Product.status == "PUBLISHED"
)


def provision_customer(db: Database, env_id: int, req: CustomerProvisionWithSubscription) -> customers.CustomerView:
    # What only the billing provider can answer is asked first: no lock is held while it answers.
    checked = customers.check_payment_method(db, env_id, req.id, req)
    prefetched = _prefetch_promotion_code(db, env_id, req)
    with customers.refusing_taken_id(db, env_id, req.id), db.transaction() as s:
        s.info.update(prefetched)
        customer = customers.create_customer(s, env_id, req, payment_method=checked, look_up=False)
        start_journey(s, env_id, customer, req)
        # A new customer's integration links are the ones it was given (none: nothing to read).
        return customers.view(s, customer, links=None if req.integrations else [])


def start_journey(s: Session, env_id: int, customer: Customer, req: CustomerProvisionWithSubscription) -> None:
    """`customer`: inserted by this transaction (it holds no subscription yet)."""
    # Read first: provisioning then finds the requested plan's product among them, not in another read.
    published = list(s.scalars(_PUBLISHED_PRODUCTS, {"env_id": env_id}))
    requested_product: int | None = None
    if req.subscription_params is not None:
        params = req.subscription_params.model_dump(exclude_unset=True)
        sub = provision_unanswered(
            s, env_id, SubscriptionProvision(customer_id=customer.ref_id, **params), created=customer, newcomer=True
        )
        requested_product = sub.product_pk
    # One subscription per product (the requested one's is skipped), so each is the customer's first there.
    for product in published:
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
            newcomer=True,
        )


def _prefetch_promotion_code(db: Database, env_id: int, req: CustomerProvisionWithSubscription) -> dict[str, Any]:
    params = req.subscription_params
    code = params.applied_coupon.promotion_code if params is not None and params.applied_coupon else None
    if params is None or not code:
        return {}
    information = params.billing_information.wire() if params.billing_information else None
    linked = next((link.id for link in req.integrations or [] if link.vendor_identifier == "STRIPE"), None)
    return ports.billing.impl.prefetch_promotion_code(
        db, env_id, req.id, information, code, customer_integration=linked
    )
