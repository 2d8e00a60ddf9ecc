"""Catalog pages: features (types, units, meters with their filter and aggregation editor)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool as run_sync

from entitle.catalog.features import service as features
from entitle.catalog.features.schemas import (
    FEATURE_TYPES,
    METER_TYPES,
    AggregationFunction,
    FeatureCreate,
    FilterOperation,
)
from entitle.console.web import PREFIX, Edit, Page, parsed, redirect, render
from entitle.db.pagination import PageRequest
from entitle.http.deps import DB, comma_list

router = APIRouter(prefix=PREFIX, include_in_schema=False)
# Rows of the meter's condition editor (all must hold: one filter of ANDed conditions). Blank rows are ignored.
CONDITION_ROWS = 3
AGGREGATIONS: tuple[str, ...] = AggregationFunction.__args__  # type: ignore[attr-defined]
OPERATIONS: tuple[str, ...] = FilterOperation.__args__  # type: ignore[attr-defined]
Short = Annotated[str, Form(max_length=255)]


@router.get("/features")
def features_page(
    request: Request,
    ctx: Page,
    db: DB,
    feature_type: Annotated[str, Query(max_length=16)] = "",
    archived: Annotated[bool, Query()] = False,
    after: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    page = features.list_features(
        db,
        ctx.env_id,
        PageRequest(limit=50, after=after, before=before),
        feature_types=comma_list(feature_type, FEATURE_TYPES, name="featureType"),
        archived=archived,
    )
    return render(
        request,
        ctx,
        "features.html",
        page=page,
        feature_type=feature_type,
        archived=archived,
        feature_types=FEATURE_TYPES,
        meter_types=METER_TYPES,
        aggregations=AGGREGATIONS,
        operations=OPERATIONS,
        condition_rows=range(CONDITION_ROWS),
    )


def meter_of(function: str, field: str, conditions: list[tuple[str, str, str]]) -> dict[str, Any] | None:
    """The API's `meter` object from the editor's fields (None when no aggregation is chosen)."""
    if not function:
        return None
    rows = []
    for cond_field, operation, value in conditions:
        if not cond_field and not value:
            continue
        row: dict[str, Any] = {"field": cond_field, "operation": operation}
        if operation == "IN":
            row["values"] = [v.strip() for v in value.split(",") if v.strip()]
        elif operation not in ("IS_NULL", "IS_NOT_NULL"):
            row["value"] = value
        rows.append(row)
    return {
        "aggregation": {"function": function, **({"field": field} if field else {})},
        "filters": [{"conditions": rows}] if rows else [],
    }


@router.post("/features")
async def create_feature(request: Request, ctx: Edit, db: DB) -> Response:
    form = await request.form()

    def text(name: str) -> str:
        value = form.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    conditions = [
        (text(f"cond_field_{i}"), text(f"cond_op_{i}"), text(f"cond_value_{i}")) for i in range(CONDITION_ROWS)
    ]
    enum_values = [v.strip() for v in text("enum_values").split(",") if v.strip()]
    req = parsed(
        FeatureCreate,
        {
            "id": text("id"),
            "display_name": text("display_name"),
            "feature_type": text("feature_type"),
            "meter_type": text("meter_type") or "None",
            "feature_units": text("feature_units"),
            "feature_units_plural": text("feature_units_plural"),
            "description": text("description"),
            "enum_configuration": [{"value": v, "display_name": v} for v in enum_values] or None,
            "meter": meter_of(text("aggregation"), text("aggregation_field"), conditions),
        },
    )
    await run_sync(features.create_feature, db, ctx.env_id, req)
    return redirect(f"{PREFIX}/features")


@router.post("/features/{feature_id}/archive")
def archive_feature(ctx: Edit, db: DB, feature_id: str) -> Response:
    features.archive_feature(db, ctx.env_id, feature_id)
    return redirect(f"{PREFIX}/features")


@router.post("/features/{feature_id}/unarchive")
def unarchive_feature(ctx: Edit, db: DB, feature_id: str) -> Response:
    """The way back from an archive (one click, which takes the feature from every customer granted it)."""
    features.unarchive_feature(db, ctx.env_id, feature_id)
    return redirect(f"{PREFIX}/features")
