from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from entitle.catalog.features import service
from entitle.catalog.features.schemas import (
    FEATURE_STATUSES,
    FEATURE_TYPES,
    METER_TYPES,
    FeatureCreate,
    FeatureOut,
    FeatureUpdate,
)
from entitle.http.deps import DB, CreatedAt, Paging, ServerKey, comma_list
from entitle.http.wire import Envelope, PageEnvelope, envelope, page_envelope

router = APIRouter(prefix="/api/v1/features", tags=["features"])


@router.post("", response_model=Envelope[FeatureOut])
def create_feature(body: FeatureCreate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(FeatureOut.of(service.create_feature(db, key.environment_id, body)))


@router.get("", response_model=PageEnvelope[FeatureOut])
def list_features(
    key: ServerKey,
    db: DB,
    page: Paging,
    created_at: CreatedAt,
    id: Annotated[str | None, Query()] = None,
    feature_type: Annotated[str | None, Query(alias="featureType")] = None,
    meter_type: Annotated[str | None, Query(alias="meterType")] = None,
    status: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    result = service.list_features(
        db,
        key.environment_id,
        page,
        ids=comma_list(id, name="id"),
        feature_types=comma_list(feature_type, FEATURE_TYPES, name="featureType"),
        meter_types=comma_list(meter_type, METER_TYPES, name="meterType"),
        statuses=comma_list(status, FEATURE_STATUSES, name="status"),
        created_at=created_at,
    )
    return page_envelope(result, FeatureOut.of)


@router.get("/{feature_id}", response_model=Envelope[FeatureOut])
def get_feature(feature_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(FeatureOut.of(service.get_feature(db, key.environment_id, feature_id)))


@router.patch("/{feature_id}", response_model=Envelope[FeatureOut])
def update_feature(feature_id: str, body: FeatureUpdate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(FeatureOut.of(service.update_feature(db, key.environment_id, feature_id, body)))


@router.post("/{feature_id}/archive", response_model=Envelope[FeatureOut])
def archive_feature(feature_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(FeatureOut.of(service.archive_feature(db, key.environment_id, feature_id)))


@router.post("/{feature_id}/unarchive", response_model=Envelope[FeatureOut])
def unarchive_feature(feature_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(FeatureOut.of(service.unarchive_feature(db, key.environment_id, feature_id)))
