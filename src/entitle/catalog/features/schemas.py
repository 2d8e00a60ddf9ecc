"""Feature wire shapes (stigg/types/v1/feature*.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from entitle.catalog.features.models import Feature
from entitle.http.wire import LongText, Metadata, RefId, ShortText, Unsupported, WireModel

FeatureType = Literal["BOOLEAN", "NUMBER", "ENUM"]
MeterType = Literal["None", "FLUCTUATING", "INCREMENTAL"]
FeatureStatus = Literal["NEW", "SUSPENDED", "ACTIVE"]
AggregationFunction = Literal["SUM", "MAX", "MIN", "AVG", "COUNT", "UNIQUE"]
FilterOperation = Literal[
    "EQUALS",
    "NOT_EQUALS",
    "GREATER_THAN",
    "GREATER_THAN_OR_EQUAL",
    "LESS_THAN",
    "LESS_THAN_OR_EQUAL",
    "IS_NULL",
    "IS_NOT_NULL",
    "CONTAINS",
    "STARTS_WITH",
    "ENDS_WITH",
    "IN",
]
FEATURE_TYPES: tuple[str, ...] = ("BOOLEAN", "NUMBER", "ENUM")
METER_TYPES: tuple[str, ...] = ("None", "FLUCTUATING", "INCREMENTAL")
FEATURE_STATUSES: tuple[str, ...] = ("NEW", "SUSPENDED", "ACTIVE")


class EnumValue(WireModel):
    value: ShortText = Field(min_length=1)
    display_name: ShortText


class Aggregation(WireModel):
    function: AggregationFunction
    field: ShortText | None = None

    @model_validator(mode="after")
    def _field_needed(self) -> Aggregation:
        if self.function != "COUNT" and not self.field:
            raise ValueError(f"aggregation {self.function} needs the event field to aggregate")
        return self


class Condition(WireModel):
    field: ShortText = Field(min_length=1)
    operation: FilterOperation
    value: ShortText | None = None
    values: list[ShortText] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _operands(self) -> Condition:
        if self.operation == "IN":
            if not self.values:
                raise ValueError("operation IN needs a non-empty 'values' list")
        elif self.operation not in ("IS_NULL", "IS_NOT_NULL") and self.value is None:
            raise ValueError(f"operation {self.operation} needs a 'value'")
        return self


class Filter(WireModel):
    conditions: list[Condition] = Field(min_length=1, max_length=100)


class Meter(WireModel):
    aggregation: Aggregation
    filters: list[Filter] = Field(max_length=100)


class UnitTransformation(WireModel):
    divide: int = Field(ge=1, le=2**31)
    round: Literal["UP", "DOWN"] = "UP"
    feature_units: ShortText | None = None
    feature_units_plural: ShortText | None = None


class FeatureCreate(WireModel):
    id: RefId
    display_name: ShortText = Field(min_length=1)
    feature_type: FeatureType
    meter_type: MeterType = "None"
    feature_status: FeatureStatus = "NEW"
    description: LongText | None = None
    feature_units: ShortText | None = None
    feature_units_plural: ShortText | None = None
    metadata: Metadata | None = None
    enum_configuration: list[EnumValue] | None = Field(default=None, max_length=500)
    # Usage is reported to the billing provider untransformed.
    unit_transformation: Unsupported[UnitTransformation] = None
    meter: Meter | None = None


class FeatureUpdate(WireModel):
    display_name: ShortText | None = Field(default=None, min_length=1)
    description: LongText | None = None
    feature_units: ShortText | None = None
    feature_units_plural: ShortText | None = None
    metadata: Metadata | None = None
    enum_configuration: list[EnumValue] | None = Field(default=None, max_length=500)
    unit_transformation: Unsupported[UnitTransformation] = None
    meter: Meter | None = None


class FeatureOut(WireModel):
    id: str
    display_name: str
    feature_type: str
    feature_status: str
    meter_type: str
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    feature_units: str | None = None
    feature_units_plural: str | None = None
    enum_configuration: list[EnumValue] | None = None
    unit_transformation: UnitTransformation | None = None
    meter: Meter | None = None
    archived_at: datetime | None = None

    @classmethod
    def of(cls, f: Feature) -> FeatureOut:
        return cls.model_validate(
            {
                "id": f.ref_id,
                "display_name": f.display_name,
                "feature_type": f.feature_type,
                "feature_status": f.feature_status,
                "meter_type": f.meter_type,
                "metadata": f.metadata_ or {},
                "created_at": f.created_at,
                "updated_at": f.updated_at,
                "description": f.description,
                "feature_units": f.feature_units,
                "feature_units_plural": f.feature_units_plural,
                "enum_configuration": f.enum_configuration,
                "unit_transformation": f.unit_transformation,
                "meter": f.meter,
                "archived_at": f.archived_at,
            }
        )
