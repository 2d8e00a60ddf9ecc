"""A customer's cached entitlements and the local entitlement math. Pure: no I/O, no clock reads.

The math mirrors the server's `entitlements/rules.py::decide` (read, not imported: the SDK must not
depend on the server's modules):

- BOOLEAN: granted.
- ENUM: granted when every requested value is among the allowed values.
- NUMBER, unlimited or with no numeric limit: granted.
- NUMBER, not metered (the server sends no `currentUsage`): granted when `requested <= limit`
  (nothing requested: granted).
- NUMBER, metered, soft limit: granted (a soft limit never blocks).
- NUMBER, metered: granted when `current + requested <= limit`; with nothing requested, when
  `current < limit` ("is any usage left?").
- A feature absent from the customer's list: denied with the list's reason (CustomerNotFound,
  NoActiveSubscription, ...) or NoFeatureEntitlementInSubscription.

A feature priced in credits (the list's `creditPricedFeatures`) is not decided here: its answer follows a
balance at a rate the FEATURE result does not carry, so the clients ask the server (docs/credits.md).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from entitle.sdk.types import (
    UNKNOWN,
    Answer,
    EntitlementResult,
    FallbackEntitlement,
    Source,
    _set_answer,
    _set_usage,
    _set_values,
)
from entitle.sdk.types import _new as _new_result

NO_FEATURE_ENTITLEMENT = "NoFeatureEntitlementInSubscription"
USAGE_EXCEEDING_LIMIT = "RequestedUsageExceedingLimit"
VALUES_MISMATCH = "RequestedValuesMismatch"

FORMAT_VERSION = 2  # 2: credit-priced features (a state of version 1 is refetched)


def to_decimal(value: Decimal | int | float | str) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    return Decimal(str(value))


def _dec(value: Any) -> Decimal | None:
    return None if value is None else to_decimal(value)


def _when(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _epoch(value: datetime | None) -> float:
    return math.inf if value is None else value.timestamp()


# What a cached state keeps of each wire entitlement: what `Entry.parse` and `server_result` read, never a
# null. Display names, units, status, the last change's instant and the request's echo are dropped: they
# were ~3/4 of a held state's memory, and of its serialized copy in the backend.
_KEPT = frozenset(
    {
        "type",
        "isGranted",
        "accessDeniedReason",
        "usageLimit",
        "hasUnlimitedUsage",
        "hasSoftLimit",
        "enumValues",
        "currentUsage",
        "resetPeriod",
        "usagePeriodStart",
        "usagePeriodEnd",
        "validUntil",
    }
)
_KEPT_OF_FEATURE = ("id", "featureType")


def _kept(raw: Mapping[str, Any]) -> dict[str, Any]:
    kept = {key: _shared(value) for key, value in raw.items() if value is not None and key in _KEPT}
    feature = raw.get("feature")
    if feature is not None:
        kept["feature"] = {key: _shared(feature[key]) for key in _KEPT_OF_FEATURE if key in feature}
    return kept


def _shared(value: Any) -> Any:
    """A text value as the one copy every state shares (feature ids, types, reset periods and window
    bounds repeat across customers); anything else as it is."""
    return sys.intern(value) if type(value) is str else value


@dataclass(frozen=True, slots=True)
class Entry:
    """One feature of a customer's entitlement list, parsed from the wire (`EntitlementResult`)."""

    feature_id: str
    feature_type: str
    usage_limit: Decimal | None
    has_unlimited: bool
    has_soft_limit: bool
    enum_values: frozenset[str] | None
    current_usage: Decimal | None  # None: not metered
    reset_period: str | None
    period_start: datetime | None
    period_end: datetime | None
    valid_until: datetime | None
    raw: Mapping[str, Any]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Entry:
        feature = raw.get("feature") or {}
        enum = raw.get("enumValues")
        return cls(
            feature_id=feature["id"],
            feature_type=feature.get("featureType", "BOOLEAN"),
            usage_limit=_dec(raw.get("usageLimit")),
            has_unlimited=bool(raw.get("hasUnlimitedUsage")),
            has_soft_limit=bool(raw.get("hasSoftLimit")),
            enum_values=frozenset(enum) if enum is not None else None,
            current_usage=_dec(raw.get("currentUsage")),
            reset_period=raw.get("resetPeriod"),
            period_start=_when(raw.get("usagePeriodStart")),
            period_end=_when(raw.get("usagePeriodEnd")),
            valid_until=_when(raw.get("validUntil")),
            raw=raw,
        )

    def with_usage(self, current: Decimal, start: datetime | None, end: datetime | None) -> Entry:
        raw = dict(self.raw)
        raw["currentUsage"] = _json_number(current)
        if end is not None:
            raw["usagePeriodStart"] = start.isoformat() if start else raw.get("usagePeriodStart")
            raw["usagePeriodEnd"] = end.isoformat()
            return replace(
                self, current_usage=current, period_start=start or self.period_start, period_end=end, raw=raw
            )
        return replace(self, current_usage=current, raw=raw)


def _json_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


@dataclass(frozen=True, slots=True)
class State:
    """A customer's (and resource's) entitlements as last fetched, with local usage updates applied.

    `valid` is False once a change was announced (push) and not yet re-read; `expires_at` (epoch
    seconds) is the first usage-window end or grant end, after which the server's answer differs.
    """

    entries: Mapping[str, Entry]
    denied_reason: str | None
    written_at: float
    valid: bool = True
    expires_at: float = field(default=math.inf)
    # Features the server prices in credits: never answered from this state while the server answers.
    credit_priced: frozenset[str] = frozenset()
    # What each feature read so far answers, prepared on its first read, with the answers given (`Answers`).
    answers: dict[str, Answers] = field(init=False, default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], written_at: float, valid: bool = True) -> State:
        # The list's CREDIT entitlements are balances (`get_credit_balance`), not features.
        listed = [raw for raw in data.get("entitlements") or [] if raw.get("type", "FEATURE") == "FEATURE"]
        entries = {e.feature_id: e for e in (Entry.parse(_kept(raw)) for raw in listed)}
        priced = frozenset(data.get("creditPricedFeatures") or ())
        return cls.build(entries, data.get("accessDeniedReason"), written_at, valid, priced)

    @classmethod
    def build(
        cls,
        entries: Mapping[str, Entry],
        denied: str | None,
        written_at: float,
        valid: bool,
        credit_priced: frozenset[str] = frozenset(),
    ) -> State:
        expires = min(
            [math.inf]
            + [_epoch(e.period_end) for e in entries.values()]
            + [_epoch(e.valid_until) for e in entries.values()]
        )
        return cls(
            entries=entries,
            denied_reason=denied,
            written_at=written_at,
            valid=valid,
            expires_at=expires,
            credit_priced=credit_priced,
        )

    def invalidated(self) -> State:
        return replace(self, valid=False)

    def with_usage(
        self, feature_id: str, current: Decimal, start: datetime | None, end: datetime | None, written_at: float
    ) -> State | None:
        entry = self.entries.get(feature_id)
        if entry is None or entry.current_usage is None:
            return None
        entries = dict(self.entries)
        entries[feature_id] = entry.with_usage(current, start, end)
        return State.build(entries, self.denied_reason, written_at, self.valid, self.credit_priced)

    def dumps(self) -> str:
        return json.dumps(
            {
                "v": FORMAT_VERSION,
                "valid": self.valid,
                "writtenAt": self.written_at,
                "accessDeniedReason": self.denied_reason,
                "entitlements": [dict(e.raw) for e in self.entries.values()],
                "creditPricedFeatures": sorted(self.credit_priced),
            },
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, text: str) -> State | None:
        """None for an entry this version cannot read (it is then simply refetched)."""
        try:
            data = json.loads(text)
            if data.get("v") != FORMAT_VERSION:
                return None
            return cls.from_wire(data, float(data["writtenAt"]), bool(data["valid"]))
        except (ValueError, KeyError, TypeError):
            return None


# Answers kept per feature of a state: the first usages (values) asked, which are the usual ones (a state
# lasts until the customer's next change). Later ones are computed each time: on the fast path that costs
# less than keeping them (a memo filled and emptied on every call kept the garbage collector busy).
MEMO_SIZE = 16

# Integral bounds below this are compared as ints: the server's Decimal sum of two such numbers is exact.
_EXACT = 10**18


@dataclass(frozen=True, slots=True)
class Answers:
    """A fresh state's answers for one feature, prepared on the feature's first read so that a read with
    a new requested usage only compares two numbers and pairs a ready `Answer` with the request.

    `granted` and `denied` are the answer granted and the answer denied for the usage; `fixed` is the
    verdict whatever usage is requested (no values requested), None when the usage decides; `most` is the
    largest integral usage granted (infinite either way for a fixed verdict), None when the bounds are
    not small integers (the Decimal rule, `decide`, is then applied).
    """

    entry: Entry | None
    granted: Answer
    denied: Answer
    fixed: bool | None
    most: int | float | None
    # Results given, by requested usage (no values requested), and by (usage, values).
    memo: dict[Any, EntitlementResult] = field(default_factory=dict, compare=False, repr=False)
    memo_with_values: dict[Any, EntitlementResult] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, state: State, customer_id: str, feature_id: str, resource_id: str | None, now: float) -> Answers:
        entry = state.entries.get(feature_id)
        answer = evaluate(state, customer_id, feature_id, resource_id, Source.CACHE, None, None, now).answer
        if entry is None:
            return cls(entry, answer, answer, False, -math.inf)
        granted = replace(answer, is_granted=True, access_denied_reason=None)
        denied = replace(answer, is_granted=False, access_denied_reason=USAGE_EXCEEDING_LIMIT)
        fixed, most = _usage_rule(entry)
        if fixed is None:
            return cls(entry, granted, denied, fixed, most)
        return cls(entry, granted, denied, fixed, math.inf if fixed else -math.inf)


def _usage_rule(entry: Entry) -> tuple[bool | None, int | None]:
    """`decide` with no values requested, as (the verdict for any usage, or None; the largest integral usage
    granted, when the usage decides and the bounds are small integers)."""
    limit = entry.usage_limit
    current = entry.current_usage
    if entry.feature_type in ("BOOLEAN", "ENUM") or entry.has_unlimited or limit is None:
        return True, None
    if current is None:
        bound = limit
    elif entry.has_soft_limit:
        return True, None
    else:
        if not _small_integral(current):
            return None, None
        bound = limit - current
    return None, (int(bound) if _small_integral(limit) and _small_integral(bound) else None)


def _small_integral(value: Decimal) -> bool:
    return value.is_finite() and value == value.to_integral_value() and -_EXACT < value < _EXACT


def cached_answer(
    state: State,
    customer_id: str,
    feature_id: str,
    resource_id: str | None,
    requested_usage: Decimal | int | float | None,
    requested_values: Iterable[str] | None,
    now: float,
) -> EntitlementResult:
    """A fresh state's answer (source CACHE): the hot path of every read. The same answer as `evaluate` (a
    fresh state is before its expiry, so the usage and grants are as read). With no values requested,
    a small integral usage is decided by one int comparison, and the result shares the prepared `Answer`;
    the first answers asked are kept on the state per feature and requested usage (values)."""
    answers = state.answers.get(feature_id)
    if answers is None:
        answers = state.answers[feature_id] = Answers.of(state, customer_id, feature_id, resource_id, now)
    if requested_values is not None:
        return _with_values(answers, requested_usage, tuple(requested_values))
    memo = answers.memo
    result = memo.get(requested_usage)
    if result is not None:
        return result
    most = answers.most
    if type(requested_usage) is int and most is not None:
        answer = answers.granted if requested_usage <= most else answers.denied
    elif answers.fixed is not None:
        answer = answers.granted if answers.fixed else answers.denied
    else:
        answer = _decided(answers, None if requested_usage is None else to_decimal(requested_usage), None)
    # `EntitlementResult.of`, inlined (a call costs a fifth of this path). The usage is kept as given: the
    # result makes it a Decimal when read.
    result = _new_result(EntitlementResult)
    _set_answer(result, answer)
    _set_usage(result, requested_usage)
    _set_values(result, None)
    if len(memo) < MEMO_SIZE:
        memo[requested_usage] = result
    return result


def _with_values(
    answers: Answers, requested_usage: Decimal | int | float | None, values: tuple[str, ...]
) -> EntitlementResult:
    memo = answers.memo_with_values
    key = (requested_usage, values)
    result = memo.get(key)
    if result is None:
        usage = None if requested_usage is None else to_decimal(requested_usage)
        result = EntitlementResult.of(_decided(answers, usage, values), usage, values)
        if len(memo) < MEMO_SIZE:
            memo[key] = result
    return result


def _decided(answers: Answers, usage: Decimal | None, values: tuple[str, ...] | None) -> Answer:
    entry = answers.entry
    if entry is None:
        return answers.denied
    reason = decide(entry, entry.current_usage, usage, values)
    if reason is None:
        return answers.granted
    if reason == USAGE_EXCEEDING_LIMIT:
        return answers.denied
    return replace(answers.granted, is_granted=False, access_denied_reason=reason)


def decide(
    entry: Entry, current: Decimal | None, requested_usage: Decimal | None, requested_values: Iterable[str] | None
) -> str | None:
    """The denial reason, or None when granted (see the module docstring)."""
    kind = entry.feature_type
    if kind == "BOOLEAN":
        return None
    if kind == "ENUM":
        if requested_values is not None and not set(requested_values) <= (entry.enum_values or frozenset()):
            return VALUES_MISMATCH
        return None
    limit = entry.usage_limit
    if entry.has_unlimited or limit is None:
        return None
    if current is None:  # not metered: a configuration value
        return None if requested_usage is None or requested_usage <= limit else USAGE_EXCEEDING_LIMIT
    if entry.has_soft_limit:
        return None
    ok = current < limit if requested_usage is None else current + requested_usage <= limit
    return None if ok else USAGE_EXCEEDING_LIMIT


def evaluate(
    state: State,
    customer_id: str,
    feature_id: str,
    resource_id: str | None,
    source: Source,
    requested_usage: Decimal | None,
    requested_values: tuple[str, ...] | None,
    now: float,
) -> EntitlementResult:
    """Answer from a state. For a stale state (`source` STALE_CACHE) read past its expiry, do what the
    server would: a usage window that has ended counts from zero, a grant past its end is gone."""
    entry = state.entries.get(feature_id)
    current = None
    if entry is not None:
        current = entry.current_usage
        if now >= state.expires_at:
            if entry.valid_until is not None and now >= entry.valid_until.timestamp():
                entry = None
            elif current is not None and entry.period_end is not None and now >= entry.period_end.timestamp():
                current = Decimal(0)
    if entry is None:
        lacking = state.denied_reason or NO_FEATURE_ENTITLEMENT
        return _bare_result(
            customer_id, feature_id, resource_id, requested_usage, requested_values, False, source, lacking
        )
    reason = decide(entry, current, requested_usage, requested_values)
    return _entry_result(
        entry,
        customer_id,
        feature_id,
        resource_id,
        requested_usage,
        requested_values,
        is_granted=reason is None,
        source=source,
        access_denied_reason=reason,
        current_usage=current,
    )


def _bare_result(
    customer_id: str,
    feature_id: str,
    resource_id: str | None,
    requested_usage: Decimal | None,
    requested_values: tuple[str, ...] | None,
    is_granted: bool,
    source: Source,
    access_denied_reason: str | None,
) -> EntitlementResult:
    """A result that names no feature's terms (the customer lacks the feature, or the server sent none)."""
    return EntitlementResult(
        customer_id=customer_id,
        feature_id=feature_id,
        resource_id=resource_id,
        is_granted=is_granted,
        source=source,
        access_denied_reason=access_denied_reason,
        requested_usage=requested_usage,
        requested_values=requested_values,
    )


def _entry_result(
    entry: Entry,
    customer_id: str,
    feature_id: str,
    resource_id: str | None,
    requested_usage: Decimal | None,
    requested_values: tuple[str, ...] | None,
    *,
    is_granted: bool,
    source: Source,
    access_denied_reason: str | None,
    current_usage: Decimal | None,
) -> EntitlementResult:
    return EntitlementResult(
        customer_id=customer_id,
        feature_id=feature_id,
        resource_id=resource_id,
        is_granted=is_granted,
        source=source,
        access_denied_reason=access_denied_reason,
        feature_type=entry.feature_type,
        current_usage=current_usage,
        usage_limit=entry.usage_limit,
        has_unlimited_usage=entry.has_unlimited,
        has_soft_limit=entry.has_soft_limit,
        enum_values=tuple(sorted(entry.enum_values)) if entry.enum_values is not None else None,
        requested_usage=requested_usage,
        requested_values=requested_values,
        reset_period=entry.reset_period,
        usage_period_start=entry.period_start,
        usage_period_end=entry.period_end,
        valid_until=entry.valid_until,
    )


def server_result(
    data: Mapping[str, Any],
    customer_id: str,
    feature_id: str,
    resource_id: str | None,
    requested_usage: Decimal | None,
    requested_values: tuple[str, ...] | None,
) -> EntitlementResult:
    """The server's check of one feature (`GET .../entitlements/check?featureId=`), as it decided it."""
    granted = bool(data.get("isGranted"))
    reason = data.get("accessDeniedReason")
    if data.get("feature") is None:
        return _bare_result(
            customer_id, feature_id, resource_id, requested_usage, requested_values, granted, Source.SERVER, reason
        )
    entry = Entry.parse(data)
    return _entry_result(
        entry,
        customer_id,
        feature_id,
        resource_id,
        requested_usage,
        requested_values,
        is_granted=granted,
        source=Source.SERVER,
        access_denied_reason=reason,
        current_usage=entry.current_usage,
    )


def fallback_result(
    fallback: FallbackEntitlement | None,
    customer_id: str,
    feature_id: str,
    resource_id: str | None,
    requested_usage: Decimal | None,
    requested_values: tuple[str, ...] | None,
) -> EntitlementResult:
    """The answer when nothing is known: the configured fallback, or no access."""
    base = {
        "customer_id": customer_id,
        "feature_id": feature_id,
        "resource_id": resource_id,
        "source": Source.FALLBACK,
        "requested_usage": requested_usage,
        "requested_values": requested_values,
    }
    if fallback is None:
        return EntitlementResult(is_granted=False, access_denied_reason=UNKNOWN, **base)  # type: ignore[arg-type]
    limit = _dec(fallback.usage_limit)
    reason: str | None = None
    if not fallback.has_access:
        reason = NO_FEATURE_ENTITLEMENT
    elif (
        requested_usage is not None
        and limit is not None
        and not fallback.has_unlimited_usage
        and not fallback.has_soft_limit
        and requested_usage > limit
    ):
        reason = USAGE_EXCEEDING_LIMIT
    elif (
        requested_values is not None
        and fallback.enum_values is not None
        and not set(requested_values) <= set(fallback.enum_values)
    ):
        reason = VALUES_MISMATCH
    return EntitlementResult(
        is_granted=reason is None,
        access_denied_reason=reason,
        usage_limit=limit,
        has_unlimited_usage=fallback.has_unlimited_usage,
        has_soft_limit=fallback.has_soft_limit,
        enum_values=fallback.enum_values,
        **base,  # type: ignore[arg-type]
    )


def normalize_fallbacks(
    fallbacks: Mapping[str, FallbackEntitlement | bool | Mapping[str, Any]] | None,
) -> dict[str, FallbackEntitlement]:
    """`{"feature-x": True, "feature-y": {"usage_limit": 10}, "feature-z": FallbackEntitlement(...)}`."""
    out: dict[str, FallbackEntitlement] = {}
    for feature_id, value in (fallbacks or {}).items():
        if isinstance(value, FallbackEntitlement):
            out[feature_id] = value
        elif isinstance(value, bool):
            out[feature_id] = FallbackEntitlement(has_access=value)
        else:
            fields = dict(value)
            if fields.get("enum_values") is not None:
                fields["enum_values"] = tuple(fields["enum_values"])
            out[feature_id] = FallbackEntitlement(**fields)
    return out
