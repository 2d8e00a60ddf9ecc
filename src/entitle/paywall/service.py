"""The paywall: the published plans and add-ons of a product as a pricing page shows them, and
where a given customer stands.

One read transaction. Plans and add-ons are their latest published versions (what a new customer
gets). A plan's entitlements include the ones it inherits from its base plan (nearest definition
wins, `catalog.packages.rules.effective_package_entitlements`); entitlements that are withheld
(`isGranted` false) or hidden from the paywall widget are left out. Prices are the default ones,
each replaced by the country's price when there is a country and it has one: for a customer, the country
it already subscribed with, else `billingCountryCode` (`subscriptions.rules.billing_country`, Stigg's
price localization); the answer's `billingCountryCode` says which.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.catalog.packages import rules as package_rules
from entitle.catalog.packages import store as packages
from entitle.catalog.packages.models import ADDON, PLAN, Package, PackageCharge, PackageEntitlement
from entitle.customers import store as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.errors import NotFound
from entitle.paywall import rules, store
from entitle.paywall.schemas import (
    Paywall,
    PaywallAddon,
    PaywallCustomer,
    PaywallEntitlement,
    PaywallPlan,
    PaywallPrice,
    PaywallTrial,
)
from entitle.subscriptions import store as subscriptions
from entitle.subscriptions.models import Subscription
from entitle.subscriptions.preview import charges_for_country, customer_country
from entitle.subscriptions.rules import LIVE


def get_paywall(
    db: Database,
    env_id: int,
    *,
    product_ref: str | None,
    customer_ref: str | None,
    resource_ref: str | None,
    country: str | None,
) -> Paywall:
    with db.read() as s:
        products = store.live_products(s, env_id, product_ref)
        if product_ref is not None and not products:
            raise NotFound("product", product_ref)
        product_refs = {p.pk: p.ref_id for p in products}
        customer = None
        if customer_ref is not None:
            known_customer = customers.get_live(s, env_id, customer_ref)
            country = customer_country(s, known_customer.pk, country, set(product_refs))
            customer = _customer(s, known_customer, resource_ref, set(product_refs))
        plans = store.latest_published_in(s, env_id, PLAN, list(product_refs))
        addons = store.latest_published_in(s, env_id, ADDON, list(product_refs))

        chains = {plan.pk: packages.plan_chain(s, env_id, plan) for plan in plans}
        versions = {p.pk for chain in chains.values() for p in chain} | {a.pk for a in addons}
        rows = packages.entitlements_of_many(s, versions)
        feature_refs = [r.ref_id for group in rows.values() for r in group if r.entitlement_type == "FEATURE"]
        known = features.get_many(s, env_id, feature_refs)

        chosen = {p.ref_id: list(p.plan_order or []) for p in products}
        plan_out = _plans(s, plans, chains, rows, known, product_refs, addons, country, chosen)
        addon_out = [
            PaywallAddon(
                id=a.ref_id,
                display_name=a.display_name,
                description=a.description,
                product_id=product_refs[a.product_pk],
                pricing_type=_pricing_type(a, prices := _prices(s, a, country)),
                prices=prices,
                entitlements=_entitlements([rows[a.pk]], known),
                compatible_plan_ids=[p.id for p in plan_out if a.ref_id in p.compatible_addon_ids],
                max_quantity=a.max_quantity,
                dependencies=list(a.dependencies or []),
                metadata=dict(a.metadata_ or {}),
            )
            for a in addons
        ]
        return Paywall(plans=plan_out, addons=addon_out, customer=customer, billing_country_code=country)


def _plans(
    s: Session,
    plans: list[Package],
    chains: dict[int, list[Package]],
    rows: dict[int, list[PackageEntitlement]],
    known: dict[str, Feature],
    product_refs: dict[int, str],
    addons: list[Package],
    country: str | None,
    chosen: dict[str, list[str]],
) -> list[PaywallPlan]:
    """Each product's plans in its chosen order (`planOrder`), the others after them cheapest first."""
    addon_refs = {a.ref_id for a in addons}
    built: list[tuple[tuple[int, Decimal, int, int], PaywallPlan]] = []
    for plan in plans:
        prices = _prices(s, plan, country)
        pricing_type = _pricing_type(plan, prices)
        flat = [(p.billing_period, p.amount) for p in prices if _is_base(p) and p.amount is not None]
        key = rules.plan_sort_key(pricing_type, rules.monthly_equivalent(flat), len(chains[plan.pk]), plan.pk)
        trial = plan.default_trial_config
        out = PaywallPlan(
            id=plan.ref_id,
            display_name=plan.display_name,
            description=plan.description,
            product_id=product_refs[plan.product_pk],
            pricing_type=pricing_type,
            order=0,
            base_plan_id=plan.parent_plan_ref,
            version_number=plan.version_number,
            trial=PaywallTrial(duration=int(Decimal(str(trial["duration"]))), units=trial["units"]) if trial else None,
            prices=prices,
            entitlements=_entitlements([rows[p.pk] for p in chains[plan.pk]], known),
            compatible_addon_ids=[a for a in plan.compatible_addon_ids or [] if a in addon_refs],
            metadata=dict(plan.metadata_ or {}),
        )
        built.append((key, out))
    by_product: dict[str, list[PaywallPlan]] = {}
    for _key, out in sorted(built, key=lambda kv: (kv[1].product_id, kv[0])):
        by_product.setdefault(out.product_id, []).append(out)
    ordered: list[PaywallPlan] = []
    for product_ref, default in by_product.items():
        by_ref = {p.id: p for p in default}
        refs = rules.in_chosen_order([p.id for p in default], chosen.get(product_ref, []))
        for position, ref in enumerate(refs):
            by_ref[ref].order = position
            ordered.append(by_ref[ref])
    return ordered


def _is_base(price: PaywallPrice) -> bool:
    return not price.is_overage and price.billing_model == "FLAT_FEE"


def _pricing_type(package: Package, prices: list[PaywallPrice]) -> str:
    if package.pricing_type:
        return package.pricing_type
    return "PAID" if prices else "FREE"


def _prices(s: Session, package: Package, country: str | None) -> list[PaywallPrice]:
    charges = [c for c in packages.charges_of(s, package.pk) if c.billing_cadence == "RECURRING"]
    # The subscriptions' rule, so the paywall shows the prices the preview and the invoice charge.
    return [_price(c) for c in charges_for_country(charges, country)]


def _price(c: PackageCharge) -> PaywallPrice:
    currency = c.price_currency
    if currency is None and c.tiers:
        for tier in c.tiers:
            money = tier.get("unitPrice") or tier.get("flatPrice")
            if money:
                currency = money.get("currency")
                break
    data: dict[str, Any] = {
        "id": c.charge_id,
        "billing_period": c.billing_period,
        "billing_model": c.billing_model,
        "billing_country_code": c.billing_country_code,
        "amount": c.price_amount,
        "currency": currency,
        "feature_id": c.feature_ref,
        "tiers": c.tiers,
        "tiers_mode": c.tiers_mode,
        "block_size": c.block_size,
        "is_overage": c.is_overage,
        "min_unit_quantity": c.min_unit_quantity,
        "max_unit_quantity": c.max_unit_quantity,
        "credit_rate": (
            {"amount": c.credit_rate_amount, "currency_id": c.credit_rate_currency_ref}
            if c.credit_rate_amount is not None and c.credit_rate_currency_ref is not None
            else None
        ),
        "credit_grant_cadence": c.credit_grant_cadence,
    }
    return PaywallPrice.model_validate(data)


def _entitlements(chain: list[list[PackageEntitlement]], known: dict[str, Feature]) -> list[PaywallEntitlement]:
    """`chain[0]` is the package's own entitlements, then its base plan's, and so on."""
    levels = [[package_rules.terms_of(r) for r in level] for level in chain]
    effective = package_rules.effective_package_entitlements(levels)
    found: list[tuple[Decimal, int, PaywallEntitlement]] = []
    for key, terms in effective.items():
        if terms.type != "FEATURE" or not terms.is_granted:
            continue
        depth, row = next(
            (d, r) for d, level in enumerate(chain) for r in level if (r.entitlement_type, r.ref_id) == key
        )
        feature = known.get(row.ref_id)
        if feature is None or feature.archived_at is not None or rules.HIDDEN_WIDGET in (row.hidden_from_widgets or []):
            continue
        out = PaywallEntitlement(
            feature_id=feature.ref_id,
            display_name=feature.display_name,
            feature_type=feature.feature_type,
            meter_type=feature.meter_type,
            feature_units=feature.feature_units,
            feature_units_plural=feature.feature_units_plural,
            has_unlimited_usage=terms.has_unlimited_usage,
            has_soft_limit=terms.has_soft_limit,
            usage_limit=terms.usage_limit,
            reset_period=terms.reset_period,
            enum_values=sorted(terms.enum_values) if terms.enum_values is not None else None,
            is_inherited=depth > 0,
            display_name_override=row.display_name_override,
            description=row.description,
        )
        order = row.order if row.order is not None else Decimal("Infinity")
        found.append((order, len(found), out))
    return [out for _, _, out in sorted(found, key=lambda t: (t[0], t[1]))]


def _customer(s: Session, customer: Customer, resource_ref: str | None, product_pks: set[int]) -> PaywallCustomer:
    live = [
        sub
        for sub in subscriptions.of_customer(s, customer.pk, LIVE)
        if sub.product_pk in product_pks and sub.resource_ref == resource_ref
    ]
    current: Subscription | None = live[-1] if live else None  # the newest one
    addon_ids: list[str] = []
    if current is not None:
        addon_ids = [a.addon_ref for a in subscriptions.addons_of(s, [current.pk]).get(current.pk, [])]
    return PaywallCustomer(
        id=customer.ref_id,
        current_plan_id=current.plan_ref if current else None,
        current_subscription_id=current.ref_id if current else None,
        billing_period=current.billing_period if current else None,
        status=current.status if current else None,
        trial_end_date=current.trial_end_date if current else None,
        addon_ids=addon_ids,
    )
