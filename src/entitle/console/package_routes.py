"""A plan's or an add-on's page and its draft editor: details, entitlements (limits, resets, enum values
and what pricing pages show), the price with its tier editor (and a plan's trial), a plan's parent and
compatible add-ons, an add-on's maximum quantity and dependencies; the draft beside the published
version, publish with the migration type, discard, archive, version history.

The same routes serve plans (/console/plans/...) and add-ons (/console/addons/...), as the API's
routers do. Each write is the API's own service call with the API's own request model."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool as run_sync

from entitle.catalog.packages import charge_edits, package_entitlements, publishing, versions
from entitle.catalog.packages import service as packages
from entitle.catalog.packages.models import PLAN
from entitle.catalog.packages.schemas import (
    AddonUpdate,
    EntitlementsCreate,
    FeatureEntitlementUpdate,
    OveragePricingModelIn,
    PlanUpdate,
    PricingModelIn,
    PublishIn,
)
from entitle.catalog.packages.service import PATHS, PackageKind
from entitle.console import catalog_pages
from entitle.console.catalog_rules import (
    ONE_CHARGE_MODELS,
    ChargeFields,
    charge_key,
    charge_line,
    currency_code,
    entitlement_line,
    fields_of,
    one_charge,
    one_charge_editable,
    tiers_of,
)
from entitle.console.web import PREFIX, Console, Edit, Page, parsed, redirect, render, templates
from entitle.db import Database
from entitle.errors import InvalidArgument
from entitle.http.deps import DB

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Short = Annotated[str, Form(max_length=255)]
Tiny = Annotated[str, Form(max_length=32)]
Text = Annotated[str, Form(max_length=5000)]
Refs = Annotated[list[str] | None, Form(max_length=500)]
ChargeId = Annotated[str, Path(max_length=64)]
templates.env.filters.update(
    charge_key=charge_key,
    charge_line=charge_line,
    entitlement_line=entitlement_line,
    one_charge_editable=one_charge_editable,
)
WIDGETS = ("PAYWALL", "CUSTOMER_PORTAL", "CHECKOUT")
RESET_PERIODS = ("MONTH", "WEEK", "DAY", "YEAR", "HOUR")


def charge_form(
    billing_model: Tiny,
    billing_period: Tiny,
    currency: Tiny = "usd",
    amount: Tiny = "",
    feature_id: Short = "",
    billing_country_code: Tiny = "",
    tiers_mode: Tiny = "",
    tiers: Text = "",
    min_unit_quantity: Tiny = "",
    max_unit_quantity: Tiny = "",
    block_size: Tiny = "",
) -> ChargeFields:
    """The one-charge editor's form fields."""
    return ChargeFields(
        billing_model,
        billing_period,
        currency,
        amount,
        feature_id,
        billing_country_code,
        tiers_mode,
        tiers,
        min_unit_quantity,
        max_unit_quantity,
        block_size,
    )


def package_path(kind: PackageKind, ref: str) -> str:
    return f"{PREFIX}/{PATHS[kind]}/{quote(ref, safe='')}"


def _editor(kind: PackageKind) -> None:
    """Register one kind's routes (plans or add-ons) on `router`."""
    section = f"/{PATHS[kind]}/{{ref}}"

    @router.get(section, name=f"{kind.lower()}_page")
    def package_page(
        request: Request, ctx: Page, db: DB, ref: str, charge: Annotated[str, Query(max_length=64)] = ""
    ) -> Response:
        """`charge`: the id of the charge the one-charge editor opens with (to change it)."""
        data = catalog_pages.package_page(db, ctx.env_id, kind, ref)
        editing = next((c for c in data.charges if c.charge_id == charge and one_charge_editable(c)), None)
        return render(
            request,
            ctx,
            "package.html",
            p=data,
            path=package_path(kind, ref),
            widgets=WIDGETS,
            reset_periods=RESET_PERIODS,
            charge_models=ONE_CHARGE_MODELS,
            edited_charge=editing,
            charge_fields=fields_of(editing) if editing else ChargeFields("FLAT_FEE", "MONTHLY"),
        )

    @router.get(section + "/versions/{number}", name=f"{kind.lower()}_version")
    def version_page(request: Request, ctx: Page, db: DB, ref: str, number: int) -> Response:
        data = catalog_pages.version_page(db, ctx.env_id, kind, ref, number)
        return render(request, ctx, "version.html", v=data, path=package_path(kind, ref))

    @router.post(section + "/details", name=f"{kind.lower()}_details")
    def edit_details(ctx: Edit, db: DB, ref: str, display_name: Short, description: Text = "") -> Response:
        body = {"display_name": display_name, "description": description.strip() or None}
        if kind == PLAN:
            packages.update_plan(db, ctx.env_id, ref, parsed(PlanUpdate, body, blanks_clear=True))
        else:
            packages.update_addon(db, ctx.env_id, ref, parsed(AddonUpdate, body, blanks_clear=True))
        return redirect(package_path(kind, ref))

    @router.post(section + "/draft", name=f"{kind.lower()}_draft")
    def create_draft(ctx: Edit, db: DB, ref: str) -> Response:
        publishing.create_draft(db, ctx.env_id, kind, ref)
        return redirect(package_path(kind, ref))

    @router.post(section + "/draft/discard", name=f"{kind.lower()}_discard")
    def discard_draft(ctx: Edit, db: DB, ref: str) -> Response:
        publishing.remove_draft(db, ctx.env_id, kind, ref)
        return redirect(package_path(kind, ref))

    @router.post(section + "/entitlements", name=f"{kind.lower()}_add_entitlement")
    def add_entitlement(
        ctx: Edit,
        db: DB,
        ref: str,
        feature_id: Short,
        usage_limit: Tiny = "",
        has_unlimited_usage: Tiny = "",
        has_soft_limit: Tiny = "",
        reset_period: Tiny = "",
        enum_values: Text = "",
    ) -> Response:
        item: dict[str, Any] = {
            "type": "FEATURE",
            "id": feature_id,
            "usage_limit": usage_limit,
            "has_unlimited_usage": bool(has_unlimited_usage) or None,
            "has_soft_limit": bool(has_soft_limit) or None,
            "reset_period": reset_period,
            "enum_values": [v.strip() for v in enum_values.split(",") if v.strip()] or None,
        }
        req = parsed(EntitlementsCreate, {"entitlements": [{k: v for k, v in item.items() if v not in ("", None)}]})
        package_entitlements.add_entitlements(db, ctx.env_id, kind, ref, req.entitlements)
        return redirect(package_path(kind, ref))

    @router.post(section + "/entitlements/{feature_id}", name=f"{kind.lower()}_edit_entitlement")
    async def edit_entitlement(request: Request, ctx: Edit, db: DB, ref: str, feature_id: str) -> Response:
        form = await request.form()

        def text(name: str) -> str | None:
            value = form.get(name)
            return value.strip() or None if isinstance(value, str) else None

        body: dict[str, Any] = {
            "type": "FEATURE",
            "display_name_override": text("display_name_override"),
            "description": text("description"),
            "order": text("order"),
            "hidden_from_widgets": [w for w in form.getlist("hidden_from_widgets") if isinstance(w, str)],
        }
        if "usage_limit" in form:  # only a NUMBER feature's editor has limits and resets
            body["usage_limit"] = text("usage_limit")
            body["has_unlimited_usage"] = bool(text("has_unlimited_usage"))
            body["has_soft_limit"] = bool(text("has_soft_limit"))
            body["reset_period"] = text("reset_period")
        if "enum_values" in form:  # only an enum feature's editor has the field
            values = text("enum_values") or ""
            body["enum_values"] = [v.strip() for v in values.split(",") if v.strip()]
        req = parsed(FeatureEntitlementUpdate, body, blanks_clear=True)
        await run_sync(package_entitlements.update_entitlement, db, ctx.env_id, kind, ref, feature_id, req)
        return redirect(package_path(kind, ref) + f"#entitlement-{quote(feature_id, safe='')}")

    @router.post(section + "/entitlements/{feature_id}/remove", name=f"{kind.lower()}_remove_entitlement")
    def remove_entitlement(ctx: Edit, db: DB, ref: str, feature_id: str) -> Response:
        package_entitlements.remove_entitlement(db, ctx.env_id, kind, ref, feature_id)
        return redirect(package_path(kind, ref))

    @router.post(section + "/price", name=f"{kind.lower()}_price")
    def set_price(
        ctx: Edit,
        db: DB,
        ref: str,
        billing_model: Tiny,
        billing_period: Tiny,
        currency: Tiny = "usd",
        amount: Tiny = "",
        feature_id: Short = "",
        tiers_mode: Tiny = "",
        tiers: Text = "",
        billing_country_code: Tiny = "",
        country_amount: Tiny = "",
        country_currency: Tiny = "",
        overage_feature_id: Short = "",
        overage_amount: Tiny = "",
        min_unit_quantity: Tiny = "",
        max_unit_quantity: Tiny = "",
        trial_days: Tiny = "",
    ) -> Response:
        currency = currency_code(currency)
        period: dict[str, Any] = {"billing_period": billing_period}
        if tiers.strip():
            period["tiers"] = tiers_of(tiers, currency)
        elif amount:
            period["price"] = {"amount": amount, "currency": currency}
        periods = [period]
        if billing_country_code or country_amount:
            # The same price for one country at another amount, beside the default one.
            country_price = {"amount": country_amount, "currency": currency_code(country_currency) or currency}
            periods.append({**period, "billing_country_code": billing_country_code, "price": country_price})
            periods[-1].pop("tiers", None)
        model: dict[str, Any] = {"billing_model": billing_model, "price_periods": periods}
        for name, value in (
            ("feature_id", feature_id),
            ("min_unit_quantity", min_unit_quantity),
            ("max_unit_quantity", max_unit_quantity),
        ):
            if value:
                model[name] = value
        if tiers_mode and tiers.strip():
            model["tiers_mode"] = tiers_mode
        charges: dict[str, Any] = {"pricing_type": "PAID", "pricing_models": [model]}
        if overage_feature_id or overage_amount:
            # Usage beyond the entitlement's limit, charged per unit with the base price's period.
            price = {"billing_period": billing_period, "price": {"amount": overage_amount, "currency": currency}}
            charges["overage_pricing_models"] = [{"feature_id": overage_feature_id or None, "price_periods": [price]}]
        body: dict[str, Any] = {"charges": charges}
        if kind == PLAN:
            if trial_days:
                body["default_trial_config"] = {"duration": trial_days, "units": "DAY"}
            packages.update_plan(db, ctx.env_id, ref, parsed(PlanUpdate, body))
        else:
            if trial_days:
                raise InvalidArgument("an add-on has no trial of its own: it follows its plan's")
            packages.update_addon(db, ctx.env_id, ref, parsed(AddonUpdate, body))
        return redirect(package_path(kind, ref))

    def put_charge(ctx: Console, db: Database, ref: str, fields: ChargeFields, replacing: str | None) -> Response:
        if replacing is not None:
            current = packages.get_package(db, ctx.env_id, kind, ref)
            detail = versions.get_version(db, ctx.env_id, kind, ref, current.package.version_number)
            stored = next((c for c in detail.charges if c.charge_id == replacing), None)
            if stored is not None and not one_charge_editable(stored):
                raise InvalidArgument(
                    f"charge '{replacing}' ({charge_key(stored)}) has settings the console's editor does not show:"
                    " change it through the API (PATCH the draft's charges), or remove it here"
                )
        overage, model = one_charge(fields)
        charge = parsed(OveragePricingModelIn, model) if overage else parsed(PricingModelIn, model)
        charge_edits.put_charge(db, ctx.env_id, kind, ref, charge, replacing)
        return redirect(package_path(kind, ref) + "#pc-h")

    @router.post(section + "/charges", name=f"{kind.lower()}_add_charge")
    def add_charge(ctx: Edit, db: DB, ref: str, fields: Annotated[ChargeFields, Depends(charge_form)]) -> Response:
        return put_charge(ctx, db, ref, fields, None)

    @router.post(section + "/charges/{charge_id}", name=f"{kind.lower()}_change_charge")
    def change_charge(
        ctx: Edit, db: DB, ref: str, charge_id: ChargeId, fields: Annotated[ChargeFields, Depends(charge_form)]
    ) -> Response:
        return put_charge(ctx, db, ref, fields, charge_id)

    @router.post(section + "/charges/{charge_id}/remove", name=f"{kind.lower()}_remove_charge")
    def remove_charge(ctx: Edit, db: DB, ref: str, charge_id: ChargeId) -> Response:
        charge_edits.remove_charge(db, ctx.env_id, kind, ref, charge_id)
        return redirect(package_path(kind, ref) + "#pc-h")

    @router.post(section + "/free", name=f"{kind.lower()}_free")
    def make_free(ctx: Edit, db: DB, ref: str, pricing_type: Tiny = "FREE") -> Response:
        body = {"charges": {"pricing_type": pricing_type, "pricing_models": []}}
        if kind == PLAN:
            packages.update_plan(db, ctx.env_id, ref, parsed(PlanUpdate, body))
        else:
            packages.update_addon(db, ctx.env_id, ref, parsed(AddonUpdate, body))
        return redirect(package_path(kind, ref))

    @router.post(section + "/publish", name=f"{kind.lower()}_publish")
    def publish(ctx: Edit, db: DB, ref: str, migration_type: Tiny) -> Response:
        req = parsed(PublishIn, {"migration_type": migration_type})
        publishing.publish_package(db, ctx.env_id, kind, ref, req.migration_type)
        return redirect(package_path(kind, ref))

    @router.post(section + "/archive", name=f"{kind.lower()}_archive")
    def archive(ctx: Edit, db: DB, ref: str) -> Response:
        publishing.archive_package(db, ctx.env_id, kind, ref)
        return redirect(package_path(kind, ref))


_editor("PLAN")
_editor("ADDON")


@router.post("/plans/{ref}/trial")
def plan_trial(
    ctx: Edit, db: DB, ref: str, duration: Tiny = "", units: Tiny = "DAY", trial_end_behavior: Tiny = ""
) -> Response:
    """A draft's trial on its own (the price editor sets one only with the whole price, and never removes
    one): a blank length removes it."""
    trial = None
    if duration.strip():
        trial = {"duration": duration.strip(), "units": units, "trial_end_behavior": trial_end_behavior or None}
    packages.update_plan(db, ctx.env_id, ref, parsed(PlanUpdate, {"default_trial_config": trial}, blanks_clear=True))
    return redirect(package_path("PLAN", ref) + "#trial")


@router.post("/plans/{ref}/settings")
def plan_settings(
    ctx: Edit, db: DB, ref: str, parent_plan_id: Short = "", compatible_addon_ids: Refs = None
) -> Response:
    body = {"parent_plan_id": parent_plan_id or None, "compatible_addon_ids": compatible_addon_ids or []}
    packages.update_plan(db, ctx.env_id, ref, parsed(PlanUpdate, body, blanks_clear=True))
    return redirect(package_path("PLAN", ref))


@router.post("/addons/{ref}/settings")
def addon_settings(ctx: Edit, db: DB, ref: str, max_quantity: Tiny = "", dependencies: Refs = None) -> Response:
    body = {"max_quantity": max_quantity or None, "dependencies": dependencies or []}
    packages.update_addon(db, ctx.env_id, ref, parsed(AddonUpdate, body, blanks_clear=True))
    return redirect(package_path("ADDON", ref))
