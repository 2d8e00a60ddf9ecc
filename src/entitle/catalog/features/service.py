"""Feature use cases, one transaction each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from entitle.catalog.features import ports, store
from entitle.catalog.features.events import FeatureChanged, FeatureUnarchived
from entitle.catalog.features.models import Feature
from entitle.catalog.features.schemas import FeatureCreate, FeatureUpdate, Meter
from entitle.clock import utcnow
from entitle.db import Database
from entitle.db.pagination import CreatedAtRange, Page, PageRequest
from entitle.domain_events import publish
from entitle.errors import AlreadyExists, FailedPrecondition, InvalidArgument


def _check_shape(feature_type: str, meter_type: str, enum_values: list[str] | None, meter: Meter | None) -> None:
    if feature_type == "ENUM" and not enum_values:
        raise InvalidArgument("an ENUM feature needs a non-empty enumConfiguration")
    if feature_type != "ENUM" and enum_values:
        raise InvalidArgument("enumConfiguration is only for ENUM features")
    if enum_values is not None and len(set(enum_values)) != len(enum_values):
        raise InvalidArgument("enumConfiguration values must be unique")
    if feature_type == "BOOLEAN" and meter_type != "None":
        raise InvalidArgument("a BOOLEAN feature cannot be metered; use meterType None")
    if meter is not None and meter_type == "None":
        raise InvalidArgument("a meter needs meterType INCREMENTAL or FLUCTUATING")


def create_feature(db: Database, env_id: int, req: FeatureCreate) -> Feature:
    enum_values = [e.value for e in req.enum_configuration] if req.enum_configuration is not None else None
    _check_shape(req.feature_type, req.meter_type, enum_values, req.meter)
    with db.transaction() as s:
        if store.find(s, env_id, req.id) is not None:
            raise AlreadyExists("feature", req.id)
        feature = Feature(
            environment_id=env_id,
            ref_id=req.id,
            display_name=req.display_name,
            description=req.description,
            feature_type=req.feature_type,
            meter_type=req.meter_type,
            feature_status=req.feature_status,
            feature_units=req.feature_units,
            feature_units_plural=req.feature_units_plural,
            metadata_=dict(req.metadata or {}),
            enum_configuration=_dump_list(req.enum_configuration),
            unit_transformation=req.unit_transformation.model_dump() if req.unit_transformation else None,
            meter=req.meter.model_dump() if req.meter else None,
        )
        s.add(feature)
        s.flush()
        publish(s, FeatureChanged(env_id=env_id, feature_ref=feature.ref_id))
        return feature


def get_feature(db: Database, env_id: int, ref_id: str) -> Feature:
    with db.read() as s:
        return store.get(s, env_id, ref_id)


def update_feature(db: Database, env_id: int, ref_id: str, req: FeatureUpdate) -> Feature:
    fields = req.model_fields_set
    with db.transaction() as s:
        feature = store.get(s, env_id, ref_id)
        if "display_name" in fields and req.display_name is not None:
            feature.display_name = req.display_name
        if "description" in fields:
            feature.description = req.description
        if "feature_units" in fields:
            feature.feature_units = req.feature_units
        if "feature_units_plural" in fields:
            feature.feature_units_plural = req.feature_units_plural
        if "metadata" in fields:
            feature.metadata_ = dict(req.metadata or {})
        if "unit_transformation" in fields:
            ut = req.unit_transformation
            feature.unit_transformation = ut.model_dump() if ut else None
        enum_values = [e["value"] for e in feature.enum_configuration or []] or None
        if "enum_configuration" in fields:
            feature.enum_configuration = _dump_list(req.enum_configuration)
            enum_values = [e.value for e in req.enum_configuration] if req.enum_configuration else None
        meter = Meter.model_validate(feature.meter) if feature.meter else None
        if "meter" in fields:
            meter = req.meter
            feature.meter = req.meter.model_dump() if req.meter else None
        _check_shape(feature.feature_type, feature.meter_type, enum_values, meter)
        feature.updated_at = utcnow()
        publish(s, FeatureChanged(env_id=env_id, feature_ref=feature.ref_id))
        return feature


def list_features(
    db: Database,
    env_id: int,
    page: PageRequest,
    *,
    ids: list[str] | None = None,
    feature_types: list[str] | None = None,
    meter_types: list[str] | None = None,
    statuses: list[str] | None = None,
    created_at: CreatedAtRange = CreatedAtRange(),
    archived: bool = False,
) -> Page[Feature]:
    """Live features, or with `archived` the archived ones (what the console unarchives)."""
    with db.read() as s:
        return store.list_page(
            s,
            env_id,
            page,
            ids=ids,
            feature_types=feature_types,
            meter_types=meter_types,
            statuses=statuses,
            created_at=created_at,
            archived=archived,
        )


def archive_feature(db: Database, env_id: int, ref_id: str) -> Feature:
    """Archive a feature nothing uses any more: no plan or add-on version that is not archived, and no
    customer who holds it otherwise (a promotion, an archived package on an open subscription, an
    override). A feature in use is refused (409), so archiving never changes anyone's entitlements."""
    with db.transaction() as s:
        feature = store.get(s, env_id, ref_id)
        if feature.archived_at is None:
            users = [user for find in ports.catalog_users for user in find(s, env_id, feature.ref_id)]
            if users:
                raise FailedPrecondition(
                    f"feature '{ref_id}' is used by {', '.join(sorted(users)[:10])}; remove it there first"
                )
            # Customers who hold it otherwise would lose it silently (no entitlements.updated): refused too.
            now = utcnow()
            grants = [grant for find in ports.customer_grants for grant in find(s, env_id, feature.ref_id, now)]
            if grants:
                more = f" and {len(grants) - 10} more" if len(grants) > 10 else ""
                raise FailedPrecondition(
                    f"feature '{ref_id}' is still granted by {', '.join(grants[:10])}{more}; "
                    "revoke the promotions and migrate or cancel the subscriptions first"
                )
            feature.archived_at = now
            feature.updated_at = feature.archived_at
            publish(s, FeatureChanged(env_id=env_id, feature_ref=feature.ref_id))
        return feature


def unarchive_feature(db: Database, env_id: int, ref_id: str) -> Feature:
    """Unarchive (the customers a promotion gives it back to hear of it: `FeatureUnarchived`)."""
    with db.transaction() as s:
        feature = store.get(s, env_id, ref_id)
        if feature.archived_at is not None:
            feature.archived_at = None
            feature.updated_at = utcnow()
            publish(s, FeatureUnarchived(env_id=env_id, feature_ref=feature.ref_id, feature=feature))
        return feature


def _dump_list(items: Sequence[BaseModel] | None) -> list[dict[str, Any]] | None:
    if items is None:
        return None
    return [item.model_dump() for item in items]
