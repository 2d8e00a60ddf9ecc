"""A plan's or add-on's entitlements (feature and credit), edited on its draft (or on a package never
published)."""

from __future__ import annotations

from decimal import Decimal

from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.catalog.packages import rules, store
from entitle.catalog.packages.models import (
    PackageEntitlement,
)
from entitle.catalog.packages.schemas import (
    CreditEntitlementFields,
    CreditEntitlementIn,
    CreditEntitlementUpdate,
    EntitlementCommon,
    FeatureEntitlementFields,
    FeatureEntitlementIn,
    FeatureEntitlementUpdate,
)
from entitle.catalog.packages.service import (
    PackageKind,
    draft_of,
    feature_shape,
    new_entitlement,
)
from entitle.clock import utcnow
from entitle.db import Database
from entitle.errors import AlreadyExists, InvalidArgument, NotFound


def _apply_common(row: PackageEntitlement, req: EntitlementCommon) -> None:
    fields = req.model_fields_set
    if "behavior" in fields and req.behavior is not None:
        row.behavior = req.behavior
    if "is_granted" in fields and req.is_granted is not None:
        row.is_granted = req.is_granted
    if "is_custom" in fields:
        row.is_custom = req.is_custom
    if "order" in fields:
        row.order = req.order
    if "description" in fields:
        row.description = req.description
    if "display_name_override" in fields:
        row.display_name_override = req.display_name_override
    if "hidden_from_widgets" in fields:
        row.hidden_from_widgets = list(dict.fromkeys(req.hidden_from_widgets or []))
    if "has_soft_limit" in fields:
        row.has_soft_limit = req.has_soft_limit


def _apply_feature(row: PackageEntitlement, req: FeatureEntitlementFields, feature: Feature | None) -> None:
    """Merge the sent fields into the row, then check the result against the feature. Sending a
    usageLimit clears hasUnlimitedUsage and the other way round, unless both are sent."""
    if feature is None:
        raise NotFound("feature", row.ref_id)
    fields = req.model_fields_set
    _apply_common(row, req)
    if "usage_limit" in fields:
        row.usage_limit = Decimal(req.usage_limit) if req.usage_limit is not None else None
        if req.usage_limit is not None and "has_unlimited_usage" not in fields:
            row.has_unlimited_usage = False
    if "has_unlimited_usage" in fields:
        row.has_unlimited_usage = req.has_unlimited_usage
        if req.has_unlimited_usage and "usage_limit" not in fields:
            row.usage_limit = None
    reset_fields = {
        "reset_period",
        "monthly_reset_period_configuration",
        "weekly_reset_period_configuration",
        "yearly_reset_period_configuration",
    }
    if fields & reset_fields:
        period = req.reset_period if "reset_period" in fields else row.reset_period
        anchors = req.anchors()
        if not fields & (reset_fields - {"reset_period"}) and period == row.reset_period:
            kept = (row.reset_period_configuration or {}).get("accordingTo")
            slot = {"MONTH": 0, "WEEK": 1, "YEAR": 2}.get(period or "")
            if kept is not None and slot is not None:
                anchors = tuple(kept if i == slot else None for i in range(3))  # type: ignore[assignment]
        row.reset_period_configuration = rules.reset_configuration(period, *anchors)
        row.reset_period = period
    if "enum_values" in fields:
        row.enum_values = list(req.enum_values) if req.enum_values is not None else None
    rules.check_feature_entitlement(
        feature_shape(feature),
        usage_limit=row.usage_limit,
        has_unlimited_usage=bool(row.has_unlimited_usage),
        has_soft_limit=bool(row.has_soft_limit),
        reset_period=row.reset_period,
        enum_values=row.enum_values,
    )


def _apply_credit(row: PackageEntitlement, req: CreditEntitlementFields, known: dict[str, Feature]) -> None:
    """Credit entitlements are stored as sent. Credits come later: the custom currency id is not
    checked yet. A dependencyFeatureId must be a feature that is not archived."""
    fields = req.model_fields_set
    _apply_common(row, req)
    if "amount" in fields:
        row.amount = req.amount
    if "cadence" in fields and req.cadence is not None:
        row.cadence = req.cadence
    if "dependency_feature_id" in fields:
        ref = req.dependency_feature_id
        if ref is not None:
            feature = known.get(ref)
            if feature is None:
                raise NotFound("feature", ref)
            if feature.archived_at is not None:
                raise InvalidArgument(f"dependencyFeatureId: feature '{ref}' is archived")
        row.dependency_feature_ref = ref


def add_entitlements(
    db: Database, env_id: int, kind: PackageKind, ref: str, items: list[FeatureEntitlementIn | CreditEntitlementIn]
) -> list[PackageEntitlement]:
    """Add entitlements to the draft; one already on the draft is 409 ALREADY_EXISTS (change it with
    PATCH), and each (type, id) may appear once per request. All or nothing."""
    keys = [(i.type, i.id) for i in items]
    if len(set(keys)) != len(keys):
        raise InvalidArgument("each entitlement may appear once per request")
    with db.transaction() as s:
        package = draft_of(s, env_id, kind, ref)
        existing = {(e.entitlement_type, e.ref_id) for e in store.entitlements_of(s, package.pk)}
        refs = [i.id for i in items if isinstance(i, FeatureEntitlementIn)]
        refs += [
            i.dependency_feature_id for i in items if isinstance(i, CreditEntitlementIn) and i.dependency_feature_id
        ]
        known = features.get_many(s, env_id, refs)
        rows: list[PackageEntitlement] = []
        now = utcnow()
        for item in items:
            if (item.type, item.id) in existing:
                raise AlreadyExists(f"{item.type.lower()} entitlement", item.id)
            row = new_entitlement(env_id, package, item.type, item.id)
            if isinstance(item, FeatureEntitlementIn):
                _apply_feature(row, item, known.get(item.id))
            else:
                _apply_credit(row, item, known)
            row.created_at = now
            row.updated_at = now
            s.add(row)
            rows.append(row)
        package.updated_at = now
        s.flush()
        return rows


def list_entitlements(db: Database, env_id: int, kind: PackageKind, ref: str) -> list[PackageEntitlement]:
    """The current version's own entitlements (not those inherited from parent plans)."""
    with db.read() as s:
        return store.entitlements_of(s, store.get_current(s, env_id, kind, ref).pk)


def update_entitlement(
    db: Database,
    env_id: int,
    kind: PackageKind,
    ref: str,
    entitlement_ref: str,
    req: FeatureEntitlementUpdate | CreditEntitlementUpdate,
) -> PackageEntitlement:
    """Change one entitlement of the draft (found by type and id); the result is re-checked whole."""
    with db.transaction() as s:
        package = draft_of(s, env_id, kind, ref)
        found = {(e.entitlement_type, e.ref_id): e for e in store.entitlements_of(s, package.pk)}
        row = found.get((req.type, entitlement_ref))
        if row is None:
            other = "CREDIT" if req.type == "FEATURE" else "FEATURE"
            if (other, entitlement_ref) in found:
                raise InvalidArgument(f"entitlement '{entitlement_ref}' is a {other} entitlement, not {req.type}")
            raise NotFound("entitlement", entitlement_ref)
        if isinstance(req, FeatureEntitlementUpdate):
            _apply_feature(row, req, features.find(s, env_id, row.ref_id))
        else:
            dep = req.dependency_feature_id
            _apply_credit(row, req, features.get_many(s, env_id, [dep] if dep else []))
        now = utcnow()
        row.updated_at = now
        package.updated_at = now
        s.flush()
        return row


def remove_entitlement(
    db: Database, env_id: int, kind: PackageKind, ref: str, entitlement_ref: str
) -> PackageEntitlement:
    """Remove one entitlement from the draft and return it. When a feature and a custom currency share
    the id, the feature entitlement goes first."""
    with db.transaction() as s:
        package = draft_of(s, env_id, kind, ref)
        found = {(e.entitlement_type, e.ref_id): e for e in store.entitlements_of(s, package.pk)}
        row = found.get(("FEATURE", entitlement_ref)) or found.get(("CREDIT", entitlement_ref))
        if row is None:
            raise NotFound("entitlement", entitlement_ref)
        s.delete(row)
        package.updated_at = utcnow()
        s.flush()
        return row
