"""The demo catalog `make run` loads: a SaaS product with Free / Pro / Enterprise plans, metered
features, an add-on and a coupon. Loading is idempotent: whatever already exists is left alone.

The catalog is written in wire form (what an API caller would send) and goes through the same
schemas and services as the API, so the demo can never hold something the API would refuse.
"""

from __future__ import annotations

import contextlib
from typing import Any

from entitle.catalog.coupons import service as coupons
from entitle.catalog.coupons.schemas import CouponCreate
from entitle.catalog.features import service as features
from entitle.catalog.features.schemas import FeatureCreate
from entitle.catalog.packages import package_entitlements, publishing
from entitle.catalog.packages import service as packages
from entitle.catalog.packages.schemas import (
    AddonCreate,
    AddonUpdate,
    EntitlementsCreate,
    PlanCreate,
    PlanUpdate,
)
from entitle.catalog.products import service as products
from entitle.catalog.products.schemas import ProductCreate, ProductUpdate
from entitle.config import Settings
from entitle.db import Database
from entitle.environments.models import KeyKind
from entitle.environments.service import ensure_environment, kept_key
from entitle.errors import AlreadyExists, NotFound

PRODUCT_ID = "demo-saas"


def _flat(monthly: int, annually: int, *, de_monthly: int | None = None) -> dict[str, Any]:
    periods: list[dict[str, Any]] = [
        {"billingPeriod": "MONTHLY", "price": {"amount": monthly, "currency": "usd"}},
        {"billingPeriod": "ANNUALLY", "price": {"amount": annually, "currency": "usd"}},
    ]
    if de_monthly is not None:
        periods.append(
            {"billingPeriod": "MONTHLY", "billingCountryCode": "DE", "price": {"amount": de_monthly, "currency": "eur"}}
        )
    return {"billingModel": "FLAT_FEE", "pricePeriods": periods}


FEATURES: list[dict[str, Any]] = [
    {
        "id": "seats",
        "displayName": "Seats",
        "featureType": "NUMBER",
        "meterType": "FLUCTUATING",
        "featureUnits": "seat",
        "featureUnitsPlural": "seats",
    },
    {
        "id": "api-calls",
        "displayName": "API calls",
        "featureType": "NUMBER",
        "meterType": "INCREMENTAL",
        "featureUnits": "call",
        "featureUnitsPlural": "calls",
    },
    {
        "id": "ai-tokens",
        "displayName": "AI tokens",
        "featureType": "NUMBER",
        "meterType": "INCREMENTAL",
        "featureUnits": "token",
        "featureUnitsPlural": "tokens",
        "meter": {
            "aggregation": {"function": "SUM", "field": "tokens"},
            "filters": [{"conditions": [{"field": "eventName", "operation": "EQUALS", "value": "completion"}]}],
        },
    },
    {"id": "sso", "displayName": "Single sign-on", "featureType": "BOOLEAN"},
    {
        "id": "data-retention",
        "displayName": "Data retention",
        "featureType": "NUMBER",
        "featureUnits": "day",
        "featureUnitsPlural": "days",
    },
    {
        "id": "support-tier",
        "displayName": "Support",
        "featureType": "ENUM",
        "enumConfiguration": [
            {"value": "community", "displayName": "Community"},
            {"value": "email", "displayName": "Email"},
            {"value": "dedicated", "displayName": "Dedicated manager"},
        ],
    },
]

PLANS: list[dict[str, Any]] = [
    {
        "create": {
            "id": "free",
            "displayName": "Free",
            "productId": PRODUCT_ID,
            "pricingType": "FREE",
            "description": "For individuals trying things out",
        },
        "entitlements": [
            {"type": "FEATURE", "id": "seats", "usageLimit": 2},
            {
                "type": "FEATURE",
                "id": "api-calls",
                "usageLimit": 1000,
                "resetPeriod": "MONTH",
                "monthlyResetPeriodConfiguration": {"accordingTo": "StartOfTheMonth"},
            },
            {"type": "FEATURE", "id": "data-retention", "usageLimit": 7},
            {"type": "FEATURE", "id": "support-tier", "enumValues": ["community"]},
        ],
        "update": {},
    },
    {
        "create": {
            "id": "pro",
            "displayName": "Pro",
            "productId": PRODUCT_ID,
            "parentPlanId": "free",
            "description": "For growing teams",
        },
        "entitlements": [
            {"type": "FEATURE", "id": "seats", "usageLimit": 10},
            {"type": "FEATURE", "id": "api-calls", "usageLimit": 100_000, "resetPeriod": "MONTH"},
            {"type": "FEATURE", "id": "ai-tokens", "usageLimit": 1_000_000, "resetPeriod": "MONTH"},
            {"type": "FEATURE", "id": "sso"},
            {"type": "FEATURE", "id": "data-retention", "usageLimit": 30},
            {"type": "FEATURE", "id": "support-tier", "enumValues": ["community", "email"]},
        ],
        "update": {
            "charges": {"pricingType": "PAID", "pricingModels": [_flat(29, 290, de_monthly=27)]},
            "defaultTrialConfig": {"duration": 14, "units": "DAY", "trialEndBehavior": "CONVERT_TO_PAID"},
            "compatibleAddonIds": ["extra-seats"],
        },
    },
    {
        "create": {
            "id": "enterprise",
            "displayName": "Enterprise",
            "productId": PRODUCT_ID,
            "parentPlanId": "pro",
            "pricingType": "CUSTOM",
            "description": "Talk to sales",
        },
        "entitlements": [
            {"type": "FEATURE", "id": "seats", "hasUnlimitedUsage": True},
            {"type": "FEATURE", "id": "api-calls", "hasUnlimitedUsage": True},
            {"type": "FEATURE", "id": "data-retention", "usageLimit": 365},
            {"type": "FEATURE", "id": "support-tier", "enumValues": ["community", "email", "dedicated"]},
        ],
        "update": {"compatibleAddonIds": ["extra-seats"]},
    },
]

ADDON: dict[str, Any] = {
    "create": {"id": "extra-seats", "displayName": "5 extra seats", "productId": PRODUCT_ID, "maxQuantity": 10},
    "entitlements": [{"type": "FEATURE", "id": "seats", "usageLimit": 5, "behavior": "Increment"}],
    # Priced for Germany too, as Pro is: a subscription is billed in one currency.
    "update": {"charges": {"pricingType": "PAID", "pricingModels": [_flat(15, 150, de_monthly=14)]}},
}

COUPON: dict[str, Any] = {
    "id": "launch-20",
    "name": "Launch: 20% off for 3 months",
    "percentOff": 20,
    "amountsOff": None,
    "durationInMonths": 3,
    "description": "Thanks for joining early",
    "metadata": None,
}

JOURNEY: dict[str, Any] = {
    "productSettings": {
        "subscriptionCancellationTime": "END_OF_BILLING_PERIOD",
        "subscriptionEndSetup": "DOWNGRADE_TO_FREE",
        "subscriptionStartSetup": "FREE_PLAN",
        "downgradePlanId": "free",
        "subscriptionStartPlanId": "free",
    }
}


def _exists(fn: Any, *args: Any) -> bool:
    try:
        fn(*args)
    except NotFound:
        return False
    return True


def _package(db: Database, env_id: int, kind: Any, doc: dict[str, Any]) -> None:
    ref = doc["create"]["id"]
    if _exists(packages.get_package, db, env_id, kind, ref):
        return
    if kind == "PLAN":
        packages.create_plan(db, env_id, PlanCreate.model_validate(doc["create"]))
    else:
        packages.create_addon(db, env_id, AddonCreate.model_validate(doc["create"]))
    items = EntitlementsCreate.model_validate({"entitlements": doc["entitlements"]}).entitlements
    package_entitlements.add_entitlements(db, env_id, kind, ref, items)
    if doc["update"]:
        if kind == "PLAN":
            packages.update_plan(db, env_id, ref, PlanUpdate.model_validate(doc["update"]))
        else:
            packages.update_addon(db, env_id, ref, AddonUpdate.model_validate(doc["update"]))
    publishing.publish_package(db, env_id, kind, ref, "NEW_CUSTOMERS")


def load_catalog(db: Database, env_id: int) -> None:
    for feature in FEATURES:
        if not _exists(features.get_feature, db, env_id, feature["id"]):
            features.create_feature(db, env_id, FeatureCreate.model_validate(feature))
    if not _exists(products.get_product, db, env_id, PRODUCT_ID):
        products.create_product(
            db, env_id, ProductCreate.model_validate({"id": PRODUCT_ID, "displayName": "Demo SaaS"})
        )
    _package(db, env_id, "ADDON", ADDON)  # before the plans that list it as compatible
    for plan in PLANS:
        _package(db, env_id, "PLAN", plan)
    products.update_product(db, env_id, PRODUCT_ID, ProductUpdate.model_validate(JOURNEY))
    with contextlib.suppress(AlreadyExists):
        coupons.create_coupon(db, env_id, CouponCreate.model_validate(COUPON))


def load_demo(db: Database, settings: Settings, environment: str) -> str:
    """Load the catalog into `environment` and return a server key for it, kept under the data dir
    so repeated `make run`s print the same key instead of minting a new one each time (a new one once
    the kept key is revoked or the database was made anew)."""
    env = ensure_environment(db, environment)
    load_catalog(db, env.pk)
    return kept_key(db, environment, KeyKind.SERVER, settings.data_dir / f"demo-{environment}-server-key")
