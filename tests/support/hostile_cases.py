"""The cases of test_hostile_writes.py: for every write route but the creating ones, what its write acts on
(made fresh on the module's server), a valid body, and the reads a refused write must leave as they were."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from tests.support import hostile_cases_salesforce as salesforce
from tests.support import hostile_cases_widgets as widgets
from tests.support.hostile import Make, Target, customer_reads, ok, package_reads, sub_reads

FLAT_CHARGES = {
    "pricingType": "PAID",
    "pricingModels": [
        {"billingModel": "FLAT_FEE", "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 10}}]}
    ],
}
GRANT = {
    "type": "FEATURE",
    "id": "calls",
    "usageLimit": 3,
    "hasSoftLimit": False,
    "resetPeriod": "MONTH",
    "monthlyResetPeriodConfiguration": {"accordingTo": "SubscriptionStart"},
    "description": "d",
    "displayNameOverride": "Seats",
    "order": 1,
}


def _feature_update(m: Make) -> Target:
    ref = m.feature(meter={"aggregation": {"function": "SUM", "field": "n"}, "filters": []})
    body = {
        "displayName": "F2",
        "description": "d",
        "featureUnits": "u",
        "featureUnitsPlural": "us",
        "metadata": {"k": "v"},
        "meter": {
            "aggregation": {"function": "SUM", "field": "n"},
            "filters": [{"conditions": [{"field": "region", "operation": "EQUALS", "value": "eu"}]}],
        },
    }
    return Target({"feature_id": ref}, body, [f"/api/v1/features/{ref}"])


def _archived_feature(m: Make) -> Target:
    ref = m.feature()
    ok(m.api.post(f"/api/v1/features/{ref}/archive"))
    return Target({"feature_id": ref}, None, [f"/api/v1/features/{ref}"])


def _product_update(m: Make) -> Target:
    ref = m.product()
    settings = {
        "subscriptionCancellationTime": "END_OF_BILLING_PERIOD",
        "subscriptionEndSetup": "CANCEL_SUBSCRIPTION",
        "subscriptionStartSetup": "PLAN_SELECTION",
    }
    body = {
        "displayName": "P2",
        "description": "d",
        "metadata": {"k": "v"},
        "multipleSubscriptions": True,
        "productSettings": settings,
    }
    return Target({"product_id": ref}, body, [f"/api/v1/products/{ref}"])


def _archived_product(m: Make) -> Target:
    ref = m.product()
    ok(m.api.post(f"/api/v1/products/{ref}/archive"))
    return Target({"product_id": ref}, None, [f"/api/v1/products/{ref}"])


def _product_duplicate(m: Make) -> Target:
    ref, copy_ref = m.product(), m.uid("copy")
    body = {"targetId": copy_ref, "displayName": "Copy", "description": "d"}
    return Target({"product_id": ref}, body, [f"/api/v1/products/{ref}", f"/api/v1/products/{copy_ref}"])


def _package_update(kind: str) -> Callable[[Make], Target]:
    def make(m: Make) -> Target:
        ref = m.package(kind, publish=False)
        body: dict[str, Any] = {
            "displayName": "Pk2",
            "description": "d",
            "metadata": {"k": "v"},
            "charges": FLAT_CHARGES,
        }
        if kind == "plans":
            body |= {"compatibleAddonIds": ["extra"], "defaultTrialConfig": {"duration": 14, "units": "DAY"}}
        else:
            body |= {"maxQuantity": 5, "dependencies": []}
        param = "plan_id" if kind == "plans" else "addon_id"
        return Target({param: ref}, body, package_reads(kind, ref))

    return make


def _package_action(kind: str, *, publish: bool, draft: bool = False, body: dict[str, Any] | None = None) -> Any:
    def make(m: Make) -> Target:
        ref = m.package(kind, publish=publish)
        if draft:
            ok(m.api.post(f"/api/v1/{kind}/{ref}/draft"))
        return Target({"package_id": ref}, copy.deepcopy(body), package_reads(kind, ref))

    return make


def _package_grants(kind: str) -> Callable[[Make], Target]:
    def make(m: Make) -> Target:
        ref = m.package(kind, publish=False, grants=False)
        return Target({"package_id": ref}, {"entitlements": [copy.deepcopy(GRANT)]}, package_reads(kind, ref))

    return make


def _package_grant(kind: str, *, delete: bool) -> Callable[[Make], Target]:
    def make(m: Make) -> Target:
        ref = m.package(kind, publish=False)
        body = None if delete else {k: v for k, v in GRANT.items() if k not in ("id", "usageLimit")} | {"usageLimit": 7}
        return Target({"package_id": ref, "entitlement_id": "calls"}, body, package_reads(kind, ref))

    return make


def _addon_create(m: Make) -> Target:
    ref = m.uid("addon")
    body = {
        "id": ref,
        "displayName": "A",
        "productId": "base",
        "description": "d",
        "maxQuantity": 3,
        "metadata": {"k": "v"},
    }
    return Target({}, body, [f"/api/v1/addons/{ref}", "/api/v1/addons"])


def _coupon_update(m: Make) -> Target:
    ref = m.coupon()
    return Target(
        {"coupon_id": ref}, {"name": "C2", "description": "d", "metadata": {"k": "v"}}, [f"/api/v1/coupons/{ref}"]
    )


def _coupon_archive(m: Make) -> Target:
    ref = m.coupon()
    return Target({"coupon_id": ref}, None, [f"/api/v1/coupons/{ref}"])


def _customer_import(m: Make) -> Target:
    ref = m.uid("imported")
    body = {"customers": [{"id": ref, "name": "N", "email": "n@example.com", "billingId": "b", "metadata": {"k": "v"}}]}
    return Target({}, body, [f"/api/v1/customers/{ref}"])


def _customer_update(m: Make) -> Target:
    ref = m.customer()
    body = {
        "name": "N2",
        "email": "n2@example.com",
        "billingId": m.uid("billing"),
        "language": "en",
        "timezone": "Europe/Paris",
        "metadata": {"k": "v"},
    }
    return Target({"customer_id": ref}, body, customer_reads(ref))


def _customer_archive(m: Make) -> Target:
    ref = m.customer()
    return Target({"customer_id": ref}, None, customer_reads(ref))


def _customer_unarchive(m: Make) -> Target:
    ref = m.customer()
    ok(m.api.post(f"/api/v1/customers/{ref}/archive"))
    return Target({"customer_id": ref}, None, customer_reads(ref))


def _customer_link(m: Make) -> Target:
    ref = m.customer()
    body = {"id": m.uid("hs"), "vendorIdentifier": "STRIPE", "syncedEntityId": "cus_x"}
    return Target({"customer_id": ref}, body, customer_reads(ref))


def _customer_link_change(*, delete: bool) -> Callable[[Make], Target]:
    def make(m: Make) -> Target:
        ref, link = m.customer(), m.uid("hs")
        body = {"id": link, "vendorIdentifier": "STRIPE", "syncedEntityId": "cus_x"}
        ok(m.api.post(f"/api/v1/customers/{ref}/integrations", json=body))
        return Target(
            {"customer_id": ref, "integration_id": link},
            None if delete else {"syncedEntityId": "y"},
            customer_reads(ref),
        )

    return make


def _payment_method(*, delete: bool) -> Callable[[Make], Target]:
    def make(m: Make) -> Target:
        integration = m.integration()
        ref = m.customer()
        body = {"integrationId": integration, "paymentMethodId": "pm_card_visa", "vendorIdentifier": "STRIPE"}
        # The customer is not synced to Stripe (the worker does not run here): refused, cleanly.
        return Target(
            {"customer_id": ref},
            None if delete else body,
            customer_reads(ref),
            expect=-1,
            cleanup=m.remove_integration(integration),
        )

    return make


def _portal_session(m: Make) -> Target:
    integration = m.integration()
    ref = m.customer()
    return Target(
        {"customer_id": ref},
        {"returnUrl": "https://app.example.com/account"},
        customer_reads(ref),
        expect=-1,
        cleanup=m.remove_integration(integration),
    )


PROMOTION = {
    "featureId": "calls",
    "period": "custom",
    "customEndDate": "2100-01-01T00:00:00Z",
    "usageLimit": 5,
    "hasUnlimitedUsage": False,
    "hasSoftLimit": False,
    "isVisible": True,
    "description": "d",
    "resetPeriod": "MONTH",
    "monthlyResetPeriodConfiguration": {"accordingTo": "SubscriptionStart"},
}


def _promotion_grant(m: Make) -> Target:
    ref = m.customer()
    body = {"promotionalEntitlements": [copy.deepcopy(PROMOTION)]}
    return Target(
        {"customer_id": ref}, body, [*customer_reads(ref), f"/api/v1/customers/{ref}/promotional-entitlements"]
    )


def _promotion_revoke(m: Make) -> Target:
    ref = m.customer()
    ok(m.api.post(f"/api/v1/customers/{ref}/promotional-entitlements", json={"promotionalEntitlements": [PROMOTION]}))
    return Target(
        {"customer_id": ref, "feature_id": "calls"},
        None,
        [*customer_reads(ref), f"/api/v1/customers/{ref}/promotional-entitlements"],
    )


def _subscription_create(m: Make) -> Target:
    customer, ref = m.customer(), m.uid("sub")
    body = {
        "id": ref,
        "customerId": customer,
        "planId": "basic",
        "billingPeriod": "MONTHLY",
        "unitQuantity": 1,
        "addons": [{"id": "extra", "quantity": 2}],
        "entitlements": [{"type": "FEATURE", "id": "calls", "usageLimit": 50}],
        "startDate": "2030-01-01T00:00:00Z",
        "metadata": {"k": "v"},
        "appliedCoupon": {"couponId": "c10"},
        "trialOverrideConfiguration": {"isTrial": False},
    }
    return Target({}, body, [f"/api/v1/subscriptions/{ref}", *customer_reads(customer)])


def _subscription_preview(m: Make) -> Target:
    customer = m.customer()
    body = {
        "customerId": customer,
        "planId": "basic",
        "billingPeriod": "MONTHLY",
        "unitQuantity": 1,
        "addons": [{"id": "extra", "quantity": 1}],
        "startDate": "2030-01-01T00:00:00Z",
        "appliedCoupon": {"couponId": "c10"},
    }
    return Target({}, body, customer_reads(customer))


def _subscription_update(m: Make) -> Target:
    customer, ref = m.subscription()
    body = {
        "addons": [{"id": "extra", "quantity": 2}],
        "entitlements": [{"type": "FEATURE", "id": "calls", "usageLimit": 20}],
        "billingPeriod": "MONTHLY",
        "scheduleStrategy": "IMMEDIATE",
        "metadata": {"k": "v"},
        "appliedCoupon": {"couponId": "c10"},
    }
    return Target({"subscription_id": ref}, body, sub_reads(customer, ref))


def _subscription_action(body: dict[str, Any] | None, *, plan: str = "basic", **extra: Any) -> Any:
    def make(m: Make) -> Target:
        customer, ref = m.subscription(plan, **extra)
        filled = json.loads(json.dumps(body).replace("{other}", m.customer())) if body is not None else None
        return Target({"subscription_id": ref}, filled, sub_reads(customer, ref))

    return make


def _scheduled_update(m: Make) -> Target:
    customer, ref = m.subscription("pro")
    ok(
        m.api.patch(
            f"/api/v1/subscriptions/{ref}",
            json={"billingPeriod": "ANNUALLY", "scheduleStrategy": "END_OF_BILLING_PERIOD"},
        )
    )
    return Target({"subscription_id": ref}, None, sub_reads(customer, ref), expect=-1)


def _refused_action(m: Make) -> Target:
    """A subscription action Entitle answers with a clean 4xx here (no provider, nothing pending)."""
    customer, ref = m.subscription()
    return Target({"subscription_id": ref}, None, sub_reads(customer, ref), expect=-1)


def _subscriptions_import(m: Make) -> Target:
    customer = m.customer()
    row = {
        "id": m.uid("imported"),
        "customerId": customer,
        "planId": "basic",
        "startDate": "2020-01-01T00:00:00Z",
        "endDate": "2090-01-01T00:00:00Z",
        "addons": [{"id": "extra", "quantity": 1}],
        "billingId": "sub_elsewhere",
        "metadata": {"k": "v"},
    }
    return Target({}, {"subscriptions": [row]}, customer_reads(customer))


def _external_subscription(m: Make) -> tuple[str, str]:
    """A subscription billed elsewhere (a billingId): one a contract may hold."""
    return m.subscription(billingId=m.uid("sub_ext"))


def _contract_create(m: Make) -> Target:
    customer, ref = _external_subscription(m)
    body = {
        "customerId": customer,
        "contractId": m.uid("contract"),
        "name": "Deal",
        "poNumber": "PO-1",
        "activationStartDate": "2030-01-01T00:00:00Z",
        "activationEndDate": "2031-01-01T00:00:00Z",
        "setupBilling": False,
        "subscriptions": [{"existingSubscriptionId": ref}],
    }
    return Target({}, body, [*sub_reads(customer, ref), f"/api/v1/customers/{customer}/contracts"])


def _contract(make_body: Callable[[str], dict[str, Any] | None]) -> Callable[[Make], Target]:
    def make(m: Make) -> Target:
        customer, ref = _external_subscription(m)
        body = {
            "customerId": customer,
            "contractId": m.uid("contract"),
            "subscriptions": [{"existingSubscriptionId": ref}],
        }
        contract = ok(m.api.post("/api/v1/contracts", json=body))["contractId"]
        reads = [f"/api/v1/contracts/{contract}", *sub_reads(customer, ref)]
        return Target({"contract_id": contract}, make_body(ref), reads)

    return make


def _usage_v1(m: Make) -> Target:
    customer = m.customer(subscriptionParams={"planId": "basic"})
    usage = {
        "customerId": customer,
        "featureId": "calls",
        "value": 1,
        "idempotencyKey": m.uid("u"),
        "updateBehavior": "DELTA",
    }
    return Target({}, {"usages": [usage]}, customer_reads(customer))


def _job_retry(m: Make) -> Target:
    return Target({"job_id": "999999"}, None, ["/api/v1/jobs"], expect=404)


def _integration_connect(m: Make) -> Target:
    body = {
        "vendorIdentifier": "STRIPE",
        "apiSecretKey": m.stripe_secret(),
        "webhookSecret": "whsec_bogus",
        "apiBase": m.stripe_base,
        "isDefault": False,
        "syncCustomers": True,
        "syncSubscriptions": True,
        "taxEnabled": False,
        "paymentSettlementHours": 24,
    }
    # apiBase is pinned to the local emulator: an integration without one (apiBase: null is valid) would
    # reach the real Stripe, which connecting asks whether the key works. Its hostile URLs are in test_hostile_inputs.
    return Target(
        {},
        body,
        ["/api/v1/integrations"],
        expect=-1,
        cleanup=lambda: _remove_all_integrations(m.api),
        pinned=frozenset({("apiBase",)}),
    )


def _portal_configuration(m: Make) -> Target:
    ref = m.integration()
    return Target(
        {"integration_id": ref},
        None,
        ["/api/v1/integrations"],
        expect=-1,
        cleanup=lambda: _remove_all_integrations(m.api),
    )


def _remove_all_integrations(api: httpx.Client) -> None:
    for integration in ok(api.get("/api/v1/integrations")):
        ok(api.delete(f"/api/v1/integrations/{integration['id']}"))


def _integration_remove(m: Make) -> Target:
    ref = m.integration()
    return Target(
        {"integration_id": ref}, None, ["/api/v1/integrations"], cleanup=lambda: _remove_all_integrations(m.api)
    )


def _stripe_event(m: Make) -> Target:
    ref = m.integration()
    event = {"id": m.uid("evt"), "type": "invoice.paid", "data": {"object": {"id": "in_1", "customer": "cus_1"}}}
    # No signature: refused (400), and nothing is stored.
    return Target(
        {"integration_id": ref},
        event,
        ["/api/v1/integrations", f"/api/v1/integrations/{ref}/sync-states"],
        expect=-1,
        cleanup=lambda: _remove_all_integrations(m.api),
    )


def _webhook_create(m: Make) -> Target:
    body = {
        "url": f"https://hooks.example.com/{m.uid('in')}",
        "eventTypes": ["customer.created"],
        "secret": "whsec_" + "A" * 32,
        "description": "d",
        "enabled": False,
    }
    return Target({}, body, ["/api/v1/webhooks"], cleanup=lambda: _remove_all_webhooks(m.api))


def _remove_all_webhooks(api: httpx.Client) -> None:
    for webhook in ok(api.get("/api/v1/webhooks")):
        ok(api.delete(f"/api/v1/webhooks/{webhook['id']}"))


def _webhook_change(*, delete: bool) -> Callable[[Make], Target]:
    def make(m: Make) -> Target:
        created = ok(
            m.api.post(
                "/api/v1/webhooks",
                json={
                    "url": f"https://hooks.example.com/{m.uid('in')}",
                    "eventTypes": ["customer.created"],
                    "enabled": False,
                },
            )
        )
        body = {
            "url": "https://hooks.example.com/other",
            "eventTypes": ["customer.updated"],
            "description": "d",
            "enabled": False,
        }
        return Target(
            {"webhook_id": created["id"]},
            None if delete else body,
            ["/api/v1/webhooks"],
            cleanup=lambda: _remove_all_webhooks(m.api),
        )

    return make


def _redeliver(m: Make) -> Target:
    return Target({"delivery_id": "999999"}, None, ["/api/v1/webhooks"], expect=404)


def _key_revoke(m: Make) -> Target:
    from entitle.environments.models import KeyKind

    key = m.server.key(kind=KeyKind.CLIENT)
    listed = ok(m.api.get("/api/v1/keys", params={"limit": 100}))
    ref = next(k["id"] for k in listed if key.startswith(k["prefix"]))
    return Target({"key_id": ref}, None, ["/api/v1/keys?limit=100"])


# -- credits ---------------------------------------------------------------------------------------------


def _credit_wallet(m: Make, amount: int = 0) -> tuple[str, str, list[str]]:
    """A customer, a currency, optionally a grant; and the reads that show the wallet."""
    customer, currency = m.customer(), m.uid("cur")
    ok(m.api.post("/api/v1/credits/custom-currencies", json={"id": currency, "displayName": "C"}))
    if amount:
        grant = {
            "customerId": customer,
            "currencyId": currency,
            "amount": amount,
            "displayName": "G",
            "grantType": "PAID",
        }
        ok(m.api.post("/api/v1/credits/grants", json=grant))
    reads = [
        f"/api/v1/credits/grants?customerId={customer}",
        f"/api/v1/credits/ledger?customerId={customer}&limit=100",
        f"/api/v1/customers/{customer}/entitlements/check?currencyId={currency}",
    ]
    return customer, currency, reads


_CURRENCIES = "/api/v1/credits/custom-currencies?status=ACTIVE,ARCHIVED&limit=100"
_CURRENCY_BODY = {
    "displayName": "C2",
    "description": "d",
    "symbol": "$",
    "metadata": {"k": "v"},
    "units": {"singular": "credit", "plural": "credits"},
}


def _currency_create(m: Make) -> Target:
    return Target({}, {"id": m.uid("cur"), **_CURRENCY_BODY}, [_CURRENCIES])


def _currency(m: Make, body: dict[str, Any] | None, archived: bool = False) -> Target:
    ref = m.uid("cur")
    ok(m.api.post("/api/v1/credits/custom-currencies", json={"id": ref, "displayName": "C"}))
    if archived:
        ok(m.api.post(f"/api/v1/credits/custom-currencies/{ref}/archive"))
    return Target({"currency_id": ref}, body, [_CURRENCIES])


def _grant_create(m: Make) -> Target:
    customer, currency, reads = _credit_wallet(m)
    body = {
        "customerId": customer,
        "currencyId": currency,
        "amount": 10.5,
        "displayName": "G",
        "grantType": "PAID",
        "priority": 10,
        "comment": "c",
        "metadata": {"k": "v"},
        "cost": {"amount": 5, "currency": "usd"},
        "paymentCollectionMethod": "NONE",
        "effectiveAt": "2026-01-01T00:00:00Z",
        "expireAt": "2100-01-01T00:00:00Z",
    }
    return Target({}, body, reads)


def _grant_void(m: Make) -> Target:
    customer, currency, reads = _credit_wallet(m)
    grant = {
        "customerId": customer,
        "currencyId": currency,
        "amount": 5,
        "displayName": "G",
        "grantType": "PROMOTIONAL",
    }
    return Target({"grant_id": ok(m.api.post("/api/v1/credits/grants", json=grant))["id"]}, None, reads)


def _consumption(m: Make, batch: bool) -> Target:
    customer, currency, reads = _credit_wallet(m, amount=1000)
    item = {
        "customerId": customer,
        "currencyId": currency,
        "amount": 1.25,
        "idempotencyKey": m.uid("k"),
        "dimensions": {"k": "v"},
    }
    return Target({}, {"consumptions": [item]} if batch else item, reads)


def _release(m: Make) -> Target:
    customer, currency, reads = _credit_wallet(m, amount=100)
    rid = m.uid("hold")
    held = m.api.get(
        f"/api/v1/customers/{customer}/entitlements/check",
        params={"currencyId": currency, "reserveAmount": 5, "reservationId": rid},
    )
    assert ok(held)["isGranted"]
    body = {"customerId": customer, "currencyId": currency, "consumedAmount": 2}
    return Target({"reservation_id": rid}, body, reads)


def _estimate(events: bool) -> Callable[[Make], Target]:
    """An estimate writes nothing, refused or not: the customer's reads stay as they were either way."""

    def make(m: Make) -> Target:
        customer = m.customer(subscriptionParams={"planId": "basic"})
        if events:
            body: dict[str, Any] = {"customerId": customer, "eventName": "api-call", "dimensions": {"k": "v"}}
        else:
            body = {"customerId": customer, "featureId": "calls", "value": 2, "updateBehavior": "DELTA"}
        return Target({}, body, customer_reads(customer))

    return make


@dataclass(frozen=True)
class Case:
    method: str
    template: str
    make: Callable[[Make], Target]
    # The write uses up what it acts on when it succeeds (a fresh target is made after an accepted value).
    consumes: bool = True

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


def _update(template: str, make: Callable[[Make], Target]) -> Case:
    return Case("PATCH", template, make, consumes=False)


CASES: list[Case] = [
    _update("/api/v1/features/{feature_id}", _feature_update),
    Case("POST", "/api/v1/features/{feature_id}/archive", lambda m: Target({"feature_id": m.feature()}, None, [])),
    Case("POST", "/api/v1/features/{feature_id}/unarchive", _archived_feature),
    _update("/api/v1/products/{product_id}", _product_update),
    Case("POST", "/api/v1/products/{product_id}/archive", lambda m: Target({"product_id": m.product()}, None, [])),
    Case("POST", "/api/v1/products/{product_id}/unarchive", _archived_product),
    Case("POST", "/api/v1/products/{product_id}/duplicate", _product_duplicate),
    _update("/api/v1/plans/{plan_id}", _package_update("plans")),
    Case("POST", "/api/v1/plans/{package_id}/archive", _package_action("plans", publish=True)),
    Case("POST", "/api/v1/plans/{package_id}/draft", _package_action("plans", publish=True)),
    Case("DELETE", "/api/v1/plans/{package_id}/draft", _package_action("plans", publish=True, draft=True)),
    Case(
        "POST",
        "/api/v1/plans/{package_id}/publish",
        _package_action("plans", publish=False, body={"migrationType": "NEW_CUSTOMERS"}),
    ),
    Case("POST", "/api/v1/plans/{package_id}/entitlements", _package_grants("plans")),
    _update("/api/v1/plans/{package_id}/entitlements/{entitlement_id}", _package_grant("plans", delete=False)),
    Case("DELETE", "/api/v1/plans/{package_id}/entitlements/{entitlement_id}", _package_grant("plans", delete=True)),
    Case("POST", "/api/v1/addons", _addon_create),
    _update("/api/v1/addons/{addon_id}", _package_update("addons")),
    Case("POST", "/api/v1/addons/{package_id}/archive", _package_action("addons", publish=True)),
    Case("POST", "/api/v1/addons/{package_id}/draft", _package_action("addons", publish=True)),
    Case("DELETE", "/api/v1/addons/{package_id}/draft", _package_action("addons", publish=True, draft=True)),
    Case(
        "POST",
        "/api/v1/addons/{package_id}/publish",
        _package_action("addons", publish=False, body={"migrationType": "NEW_CUSTOMERS"}),
    ),
    Case("POST", "/api/v1/addons/{package_id}/entitlements", _package_grants("addons")),
    _update("/api/v1/addons/{package_id}/entitlements/{entitlement_id}", _package_grant("addons", delete=False)),
    Case("DELETE", "/api/v1/addons/{package_id}/entitlements/{entitlement_id}", _package_grant("addons", delete=True)),
    Case("POST", "/api/v1/credits/custom-currencies", _currency_create),
    _update("/api/v1/credits/custom-currencies/{currency_id}", lambda m: _currency(m, _CURRENCY_BODY)),
    Case("POST", "/api/v1/credits/custom-currencies/{currency_id}/archive", lambda m: _currency(m, None)),
    Case("POST", "/api/v1/credits/custom-currencies/{currency_id}/unarchive", lambda m: _currency(m, None, True)),
    Case("POST", "/api/v1/credits/grants", _grant_create, consumes=False),
    Case("POST", "/api/v1/credits/grants/{grant_id}/void", _grant_void),
    Case("POST", "/api/v1/credits/consumption", lambda m: _consumption(m, batch=False)),
    Case("POST", "/api/v1/credits/consumption/async", lambda m: _consumption(m, batch=True)),
    Case("POST", "/api/v1/credits/reservations/{reservation_id}/release", _release),
    Case("POST", "/api/v1/usage/estimate", _estimate(events=False), consumes=False),
    Case("POST", "/api/v1/events/estimate", _estimate(events=True), consumes=False),
    _update("/api/v1/coupons/{coupon_id}", _coupon_update),
    Case("POST", "/api/v1/coupons/{coupon_id}/archive", _coupon_archive),
    Case("POST", "/api/v1/customers/import", _customer_import),
    _update("/api/v1/customers/{customer_id}", _customer_update),
    Case("POST", "/api/v1/customers/{customer_id}/archive", _customer_archive),
    Case("POST", "/api/v1/customers/{customer_id}/unarchive", _customer_unarchive),
    Case("POST", "/api/v1/customers/{customer_id}/integrations", _customer_link),
    _update("/api/v1/customers/{customer_id}/integrations/{integration_id}", _customer_link_change(delete=False)),
    Case("DELETE", "/api/v1/customers/{customer_id}/integrations/{integration_id}", _customer_link_change(delete=True)),
    Case("POST", "/api/v1/customers/{customer_id}/payment-method", _payment_method(delete=False)),
    Case("DELETE", "/api/v1/customers/{customer_id}/payment-method", _payment_method(delete=True)),
    Case("POST", "/api/v1/customers/{customer_id}/portal-session", _portal_session),
    Case("POST", "/api/v1/customers/{customer_id}/promotional-entitlements", _promotion_grant),
    Case("DELETE", "/api/v1/customers/{customer_id}/promotional-entitlements/{feature_id}", _promotion_revoke),
    Case("POST", "/api/v1/subscriptions/preview", _subscription_preview, consumes=False),
    _update("/api/v1/subscriptions/{subscription_id}", _subscription_update),
    Case(
        "POST",
        "/api/v1/subscriptions/{subscription_id}/cancel",
        _subscription_action(
            {"cancellationTime": "SPECIFIC_DATE", "cancellationAction": "DEFAULT", "endDate": "2100-01-01T00:00:00Z"}
        ),
    ),
    Case(
        "POST",
        "/api/v1/subscriptions/{subscription_id}/migrate",
        _subscription_action({"subscriptionMigrationTime": "IMMEDIATE"}),
    ),
    Case(
        "POST",
        "/api/v1/subscriptions/{subscription_id}/delegate",
        _subscription_action({"targetCustomerId": "{other}"}),
    ),
    Case(
        "POST",
        "/api/v1/subscriptions/{subscription_id}/transfer",
        _subscription_action({"destinationResourceId": "site-2"}, plan="site", resourceId="site-1"),
    ),
    Case("DELETE", "/api/v1/subscriptions/{subscription_id}/future-update/schedule", _scheduled_update),
    Case("DELETE", "/api/v1/subscriptions/{subscription_id}/future-update/pending-payment", _refused_action),
    Case("POST", "/api/v1/subscriptions/{subscription_id}/usage/charge", _refused_action),
    Case("POST", "/api/v1/subscriptions/{subscription_id}/usage/sync", _refused_action),
    Case("POST", "/api/v1/subscriptions/{subscription_id}/invoice/paid", _refused_action),
    Case("POST", "/api/v1/subscriptions/import", _subscriptions_import),
    Case("POST", "/api/v1/contracts", _contract_create),
    _update(
        "/api/v1/contracts/{contract_id}",
        _contract(lambda ref: {"name": "Renewal", "poNumber": "PO-2", "subscriptionIds": [ref]}),
    ),
    Case("POST", "/api/v1/contracts/{contract_id}/archive", _contract(lambda ref: None)),
    Case("POST", "/api/v1/usage", _usage_v1),
    Case("POST", "/api/v1/jobs/{job_id}/retry", _job_retry),
    Case("POST", "/api/v1/jobs/{job_id}/discard", _job_retry),
    Case("POST", "/api/v1/integrations", _integration_connect),
    Case("DELETE", "/api/v1/integrations/{integration_id}", _integration_remove),
    Case("POST", "/api/v1/integrations/{integration_id}/portal-configuration", _portal_configuration),
    Case("POST", "/api/v1/integrations/{integration_id}/webhooks/stripe", _stripe_event),
    Case("POST", "/api/v1/webhooks", _webhook_create),
    _update("/api/v1/webhooks/{webhook_id}", _webhook_change(delete=False)),
    Case("DELETE", "/api/v1/webhooks/{webhook_id}", _webhook_change(delete=True)),
    Case("POST", "/api/v1/webhooks/deliveries/{delivery_id}/redeliver", _redeliver),
    Case("POST", "/api/v1/keys/{key_id}/revoke", _key_revoke),
    Case("POST", "/api/v1/subscriptions", _subscription_create),
    Case("POST", f"{widgets.BASE}/preview", widgets.preview, consumes=False),
    Case("POST", f"{widgets.BASE}/setup-intent", widgets.setup_intent),
    Case("POST", f"{widgets.BASE}/payment-method", widgets.payment_method),
    Case("POST", f"{widgets.BASE}/portal-session", widgets.portal_session),
    Case("POST", f"{widgets.BASE}/subscriptions", widgets.subscribe),
    Case("POST", f"{widgets.BASE}/subscriptions/{{subscription_id}}/cancel", widgets.cancel),
    Case(
        "DELETE", f"{widgets.BASE}/subscriptions/{{subscription_id}}/future-update/schedule", widgets.scheduled_change
    ),
    Case("PUT", "/api/v1/salesforce/customers/{customer_id}", salesforce.upsert_customer, consumes=False),
    Case("POST", "/api/v1/salesforce/subscriptions", salesforce.provision_subscription),
    Case("POST", "/api/v1/salesforce/credit-grants", salesforce.create_credit_grant),
]

# Raw path segments (already percent-encoded as sent): ids a hostile caller puts in a path.
HOSTILE_IDS: dict[str, str] = {
    "slash": "a%2Fb",
    "dots": "..",
    "encoded-dots": "%2E%2E",
    "nul": "a%00b",
    "control": "a%01%1Fb",
    "long": "x" * 5000,
    "bad-utf8": "%C3%28",
    "space": "%20",
    "emoji": quote("\U0001f600\u202e", safe=""),
    "question": "a%3Fb",
    "huge-number": "9" * 400,
}
