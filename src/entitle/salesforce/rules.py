"""Pure rules turning pydantic's JSON Schema (2020-12, as OpenAPI 3.1 has it) into what Salesforce External
Services registers: OpenAPI 3.0 schema objects, every `$ref` inlined (no components to resolve, and a
recursive model is refused rather than written), no `oneOf`/`anyOf`/`allOf`/discriminator (a nullable
union becomes `nullable: true`; a number-or-string amount becomes a number), and only 3.0 keywords."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Put by the schema generator on a field the models refuse (`entitle.http.wire.Unsupported`): a field a
# Flow cannot send is left out of the document rather than offered and refused.
REFUSED_MARK = "x-entitle-refused"

# The Schema Object keywords of OpenAPI 3.0.3 kept as they are (the rest are converted or dropped).
_KEPT = frozenset(
    {
        "type",
        "format",
        "description",
        "enum",
        "default",
        "multipleOf",
        "maximum",
        "minimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxProperties",
        "minProperties",
        "readOnly",
        "writeOnly",
        "deprecated",
    }
)
_UNIONS = ("anyOf", "oneOf")


class RecursiveSchema(ValueError):
    """A model that contains itself: External Services cannot register it, so the document is not written."""


def is_refused(schema: Mapping[str, Any]) -> bool:
    return bool(schema.get(REFUSED_MARK))


def flatten(schema: Mapping[str, Any], defs: Mapping[str, Any], within: tuple[str, ...] = ()) -> dict[str, Any]:
    """`schema` as an OpenAPI 3.0 schema object with every reference to `defs` inlined."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        if name in within:
            raise RecursiveSchema(f"{' -> '.join((*within, name))}: a recursive schema cannot be flattened")
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        # A model's docstring speaks to Entitle's developers, not to a Flow's author.
        inlined = {k: v for k, v in defs[name].items() if k != "description"}
        return flatten({**inlined, **siblings}, defs, (*within, name))
    for union in _UNIONS:
        if union in schema:
            return _flatten_union(schema, union, defs, within)
    if "allOf" in schema:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for member in schema["allOf"]:
            merged = _merge(flatten(member, defs, within), merged)
        return flatten(merged, defs, within)
    if isinstance(schema.get("type"), list):
        members = [{**schema, "type": t} for t in schema["type"]]
        return _flatten_union({"anyOf": members}, "anyOf", defs, within)
    out = {k: v for k, v in schema.items() if k in _KEPT}
    if out.get("type") == "null":  # 3.0 has no null type: a value that is always null is a nullable one
        del out["type"]
        out["nullable"] = True
    if "const" in schema:
        out["enum"] = [schema["const"]]
    if out.get("default", ...) is None:
        del out["default"]  # a null default says nothing a nullable field does not
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(schema.get(exclusive), int | float) and not isinstance(schema.get(exclusive), bool):
            out[bound] = schema[exclusive]
            out[exclusive] = True
    if "properties" in schema:
        kept = {name: sub for name, sub in schema["properties"].items() if not is_refused(sub)}
        out["properties"] = {name: flatten(sub, defs, within) for name, sub in kept.items()}
        required = [name for name in schema.get("required", []) if name in kept]
        if required:
            out["required"] = required
        out.setdefault("type", "object")
    if "items" in schema:
        out["items"] = flatten(schema["items"], defs, within)
    if schema.get("patternProperties"):  # a map whose keys are constrained: 3.0 can say what its values are
        out["additionalProperties"] = flatten(next(iter(schema["patternProperties"].values())), defs, within)
    elif isinstance(schema.get("additionalProperties"), Mapping):
        out["additionalProperties"] = flatten(schema["additionalProperties"], defs, within)
    elif isinstance(schema.get("additionalProperties"), bool) and "properties" not in schema:
        out["additionalProperties"] = schema["additionalProperties"]
    return out


def _flatten_union(
    schema: Mapping[str, Any], union: str, defs: Mapping[str, Any], within: tuple[str, ...]
) -> dict[str, Any]:
    members = schema[union]
    present = [flatten(m, defs, within) for m in members if m.get("type") != "null"]
    chosen = _one_of(present) if present else {}
    outer = flatten({k: v for k, v in schema.items() if k not in (union, "discriminator")}, defs, within)
    out = {**chosen, **outer}
    if len(present) < len(members):
        out["nullable"] = True
    return out


def _one_of(members: list[dict[str, Any]]) -> dict[str, Any]:
    """One type for a union a Flow can fill: a number where one is offered (an exact amount the API also
    takes as a string, an integer-or-decimal answer), else the first."""
    for member in members:
        if member.get("type") == "number":
            return member
    return members[0]


def _merge(extra: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**extra, **base}
    if "properties" in extra or "properties" in base:
        merged["properties"] = {**extra.get("properties", {}), **base.get("properties", {})}
        merged["required"] = sorted({*extra.get("required", []), *base.get("required", [])})
    return merged


def forbidden_keywords(document: Any, path: str = "$") -> list[str]:
    """Where `document` still holds a keyword External Services refuses (an empty list when it holds none)."""
    found: list[str] = []
    if isinstance(document, Mapping):
        for key, value in document.items():
            if key in ("oneOf", "anyOf", "allOf", "discriminator", "$defs", "const", "prefixItems"):
                found.append(f"{path}.{key}")
            found += forbidden_keywords(value, f"{path}.{key}")
    elif isinstance(document, list):
        for i, value in enumerate(document):
            found += forbidden_keywords(value, f"{path}[{i}]")
    return found
