"""What customers are entitled to, held in this process's memory and kept exact (docs/architecture.md,
"The entitlement snapshot").

Published package versions never change, so a customer's resolved entitlements change only when
something in that customer's chain changes, or when time passes a boundary. The first is announced:
in this process by the domain events of the committing transaction (`committed`, an `on_commit`
listener: the next read sees the write), from other processes by the push change log (the hub feeds
`drop_customer` / `drop_usage` / `drop_credits` / `drop_features` / `drop_currencies`). The second needs no
announcement: every view
carries `valid_until`, the first instant it may answer differently, and is not used from then on.
A customer's credits (`Standing`: its wallets' balances, held for checks of credit-priced features, the
currency check and the list's CREDIT entitlements) likewise: a movement of a wallet is announced
(`CreditBalanceChanged`, the change log's `credits.updated`), and time's own changes (a grant starting or
ending, a hold lapsing) are each wallet's `changes_at`. A currency's edit (`CurrencyChanged`, the change
log's internal `currencies.changed`) drops the environment's currencies and customers, as a feature's does.

Versions keep a slow reader from putting back what a change already replaced: a loader reads
`version()` before it reads the database, and `keep_*` refuses its result when anything it covers
was dropped after that. While the change feed is not known to be complete (before the hub's first
read of the log, after its connection failed) nothing is kept and nothing is served from memory.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from entitle.catalog.features.events import FeatureChanged
from entitle.catalog.packages.allowance import Allowance
from entitle.credits.checks import CurrencyView, FeatureRate, Standing
from entitle.credits.events import CreditBalanceChanged, CurrencyChanged
from entitle.customers.events import EntitlementsChanged
from entitle.domain_events import DomainEvent
from entitle.grants.engine import Window
from entitle.usage.events import UsageChanged

_V = TypeVar("_V")

DEFAULT_CUSTOMERS = 10_000
"""Customers (with every resource of theirs) held at most, least recently used first out. A customer
with 20 granted features takes about 7.5 KiB once listed (`bench/snapshot_memory.py`), so the bound is
about 75 MB for such customers, and 30,000 objects the garbage collector tracks (`CustomerView`): a
server's working set of active customers fits, and a process serving more distinct customers within a
short time reads the overflow from the database."""

DEFAULT_FEATURES = 50_000
"""Features remembered for denials ("not found", "not in your plan"); well under 1 KiB each. Currencies
named by currency checks are remembered up to the same bound."""


@dataclass(frozen=True, slots=True, weakref_slot=True)
class FeatureView:
    """The feature's fields a check answers with (a plain copy: no session behind it)."""

    ref_id: str
    display_name: str
    feature_status: str
    feature_type: str
    meter_type: str
    feature_units: str | None
    feature_units_plural: str | None


@dataclass(frozen=True, slots=True, weakref_slot=True)
class GrantTerms:
    """What a grant of a feature is, whoever holds it: the feature's fields and the allowance. Every
    customer whose grant resolves alike (the same published version, no override of it, no end date)
    holds the same object (`shared_terms`), so 10,000 customers on one plan hold each of its grants once."""

    feature: FeatureView
    allowance: Allowance


@dataclass(frozen=True, slots=True)
class GrantView:
    """One granted feature as one customer holds it: its terms, the usage window that holds until the
    customer's view expires, its last change. Built for an answer (`CustomerView.grant`), not held."""

    feature: FeatureView
    allowance: Allowance
    window: Window
    updated_at: datetime


Span = tuple[datetime, datetime | None, datetime | None]
"""A usage window's start, end and anchor: a tuple of atoms, which the collector stops tracking."""


@dataclass(frozen=True, slots=True)
class CustomerView:
    """What one customer (for one resource) is entitled to, as read at `loaded_at`; it holds until
    `valid_until` (None: until a change is announced). Built by `customer_view`.

    A full collection of the garbage collector visits every object it tracks, and a process holds up to
    10,000 customers (docs/architecture.md, "Garbage collection"): what is the customer's own is kept in
    dicts of feature id -> atoms (dates, bytes, Decimals, indexes) and tuples of atoms, which the collector
    does not track, or shared between customers (`grants`). A customer costs it this one object."""

    customer_pk: int
    archived: bool
    has_subscription: bool
    # Shared by every customer holding the same terms for the same features (`customer_view`): read only.
    grants: Mapping[str, GrantTerms]
    loaded_at: datetime
    valid_until: datetime | None
    # Granted features priced in credits -> their rates: a check of one also needs the balances.
    credit_rates: Mapping[str, tuple[FeatureRate, ...]] = field(default_factory=dict)
    # Feature id -> its usage window (an index into `spans`, the customer's distinct windows) and its
    # grant's last change.
    window_of: Mapping[str, int] = field(default_factory=dict)
    spans: tuple[Span, ...] = ()
    updated_at: Mapping[str, datetime] = field(default_factory=dict)
    # Feature id -> its listed result as JSON, and the usage it was listed with: nothing else in it moves
    # while the view holds, so a warm list serializes only what usage changed. One usage per feature: the
    # memory a view takes stays bounded; it lives and is dropped with the view.
    listed: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)
    listed_usage: dict[str, Decimal | None] = field(default_factory=dict, compare=False, repr=False)

    def holds_at(self, now: datetime) -> bool:
        return self.loaded_at <= now and (self.valid_until is None or now < self.valid_until)

    def grant(self, feature_ref: str) -> GrantView | None:
        terms = self.grants.get(feature_ref)
        if terms is None:
            return None
        return GrantView(terms.feature, terms.allowance, self.window(feature_ref), self.updated_at[feature_ref])

    def window(self, feature_ref: str) -> Window:
        """The usage window of a granted feature."""
        return Window(*self.spans[self.window_of[feature_ref]])


class _SharedGrants(dict[str, GrantTerms]):
    """Feature id -> terms, one mapping for every held customer granted the same terms for the same features
    (all those of one plan version without an override). Read only."""

    __slots__ = ("__weakref__",)


_shared_features: weakref.WeakValueDictionary[tuple[str | None, ...], FeatureView] = weakref.WeakValueDictionary()
_shared_terms: weakref.WeakValueDictionary[tuple[FeatureView, Allowance], GrantTerms] = weakref.WeakValueDictionary()
_shared_grants: weakref.WeakValueDictionary[tuple[tuple[str, int], ...], _SharedGrants] = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()


def shared_terms(feature: FeatureView, allowance: Allowance) -> GrantTerms:
    """The one `GrantTerms` of these values held in this process, its feature's fields the one
    `FeatureView` of theirs (an override shares them too). Weak: what no held customer refers to any more
    goes with the last of them, so what is shared stays bounded by what is held."""
    with _shared_lock:
        # Keyed by the fields, not the view: a key that held the view would keep it alive.
        fields = (
            feature.ref_id,
            feature.display_name,
            feature.feature_status,
            feature.feature_type,
            feature.meter_type,
            feature.feature_units,
            feature.feature_units_plural,
        )
        feature = _shared_features.setdefault(fields, feature)
        key = (feature, allowance)
        found = _shared_terms.get(key)
        if found is None:
            found = _shared_terms[key] = GrantTerms(feature, allowance)
        return found


def shared_grants(grants: Mapping[str, GrantTerms]) -> Mapping[str, GrantTerms]:
    """The one mapping of these (shared) terms held in this process; weak, as `shared_terms`."""
    # Keyed by the terms' identities: an entry lives only as long as its mapping, which keeps them alive.
    key = tuple(sorted((ref, id(terms)) for ref, terms in grants.items()))
    with _shared_lock:
        found = _shared_grants.get(key)
        if found is None:
            found = _shared_grants[key] = _SharedGrants(grants)
        return found


def customer_view(
    customer_pk: int,
    *,
    archived: bool = False,
    has_subscription: bool,
    grants: Mapping[str, GrantView],
    loaded_at: datetime,
    valid_until: datetime | None,
    credit_rates: Mapping[str, tuple[FeatureRate, ...]] | None = None,
) -> CustomerView:
    """The view holding `grants`: their terms (and the mapping of them) shared with every other customer
    holding equal ones, their windows as atoms, each distinct one once."""
    spans: dict[Span, int] = {}
    window_of = {
        ref: spans.setdefault((g.window.start, g.window.end, g.window.anchor), len(spans)) for ref, g in grants.items()
    }
    return CustomerView(
        customer_pk=customer_pk,
        archived=archived,
        has_subscription=has_subscription,
        grants=shared_grants({ref: shared_terms(g.feature, g.allowance) for ref, g in grants.items()}),
        loaded_at=loaded_at,
        valid_until=valid_until,
        credit_rates=credit_rates if credit_rates is not None else {},
        window_of=window_of,
        spans=tuple(spans),
        updated_at={ref: g.updated_at for ref, g in grants.items()},
    )


Usage = Mapping[str, Decimal]
"""Metered feature id -> current usage in the window of its grant."""

Credits = Standing
"""The customer's credits for the view's resource."""

_CustomerKey = tuple[int, str]


@dataclass(slots=True)
class _Held:
    """One resource of a held customer: its view, its usage and credits (None: read them again). Slotted, and
    no dict of dicts: a dict holding a dict is tracked by the collector forever, one holding atoms never."""

    view: CustomerView
    usage: Usage | None
    credits: Credits | None


class _Missing:
    pass


MISSING = _Missing()
"""`feature()` knows nothing of the feature (as opposed to None: known not to exist)."""


class Snapshot:
    def __init__(self, max_customers: int = DEFAULT_CUSTOMERS, max_features: int = DEFAULT_FEATURES) -> None:
        self.max_customers = max_customers
        self.max_features = max_features
        self._lock = threading.Lock()
        self._version = 0
        self._live = False
        # Customer -> resource -> what is held of it.
        self._customers: OrderedDict[_CustomerKey, dict[str | None, _Held]] = OrderedDict()
        self._features: OrderedDict[tuple[int, str], FeatureView | None] = OrderedDict()
        self._currencies: OrderedDict[tuple[int, str], CurrencyView | None] = OrderedDict()
        # When each customer was last dropped, so a read begun before that is not kept. Bounded: the
        # oldest mark is folded into `_floor`, which refuses every read begun before it.
        self._dropped: OrderedDict[_CustomerKey, int] = OrderedDict()
        # When each environment's features or currencies were last dropped (every customer of it with them).
        self._catalog_dropped: dict[int, int] = {}
        self._floor = 0

    # -- reading -----------------------------------------------------------------------------

    def version(self) -> int:
        """Read before loading from the database; hand it to `keep_*`."""
        return self._version

    @property
    def live(self) -> bool:
        return self._live

    def customer(
        self, env_id: int, customer_ref: str, resource_ref: str | None, now: datetime
    ) -> tuple[CustomerView, Usage | None] | None:
        """The held view that holds at `now`, with its usage (None when usage must be read again)."""
        with self._lock:
            held = self._holding(env_id, customer_ref, resource_ref, now)
            if held is None:
                return None
            return held.view, held.usage

    def customer_with_credits(
        self, env_id: int, customer_ref: str, resource_ref: str | None, now: datetime
    ) -> tuple[CustomerView, Usage | None, Credits | None] | None:
        """`customer` and `credits` at once (one turn of the lock: the list and the currency check ask both)."""
        with self._lock:
            held = self._holding(env_id, customer_ref, resource_ref, now)
            if held is None:
                return None
            credits = held.credits
            if credits is not None and (changes_at := credits.changes_at) is not None and changes_at <= now:
                credits = None
            return held.view, held.usage, credits

    def _holding(self, env_id: int, customer_ref: str, resource_ref: str | None, now: datetime) -> _Held | None:
        """What is held of the customer's `resource_ref` when its view holds at `now` (marked recently used);
        called with the lock held."""
        held = self._held(env_id, customer_ref, resource_ref)
        if held is None or not held.view.holds_at(now):
            return None
        self._customers.move_to_end((env_id, customer_ref))
        return held

    def _held(self, env_id: int, customer_ref: str, resource_ref: str | None) -> _Held | None:
        resources = self._customers.get((env_id, customer_ref))
        return resources.get(resource_ref) if resources is not None else None

    def credits(self, env_id: int, customer_ref: str, resource_ref: str | None, now: datetime) -> Credits | None:
        """The held credits, while time has changed none of its wallets (None: read them again)."""
        with self._lock:
            held = self._held(env_id, customer_ref, resource_ref)
            credits = held.credits if held is not None else None
            if credits is None:
                return None
            changes_at = credits.changes_at
            return None if changes_at is not None and changes_at <= now else credits

    def feature(self, env_id: int, feature_ref: str) -> FeatureView | _Missing | None:
        with self._lock:
            return self._features.get((env_id, feature_ref), MISSING)

    def currency(self, env_id: int, currency_ref: str) -> CurrencyView | _Missing | None:
        with self._lock:
            return self._currencies.get((env_id, currency_ref), MISSING)

    def __len__(self) -> int:
        return len(self._customers)

    # -- keeping what was read -----------------------------------------------------------------

    def _may_keep(self, env_id: int, customer_ref: str | None, read_version: int) -> bool:
        if not self._live or read_version < self._floor:
            return False
        if self._catalog_dropped.get(env_id, 0) > read_version:
            return False
        return customer_ref is None or self._dropped.get((env_id, customer_ref), 0) <= read_version

    def keep_customer(
        self,
        env_id: int,
        customer_ref: str,
        resource_ref: str | None,
        view: CustomerView,
        usage: Usage,
        read_version: int,
        credits: Credits | None = None,
    ) -> bool:
        with self._lock:
            if not self._may_keep(env_id, customer_ref, read_version):
                return False
            key = (env_id, customer_ref)
            resources = self._customers.get(key)
            if resources is None:
                resources = self._customers[key] = {}
                while len(self._customers) > self.max_customers:
                    self._customers.popitem(last=False)
            self._customers.move_to_end(key)
            resources[resource_ref] = _Held(view, usage, credits)
            return True

    def keep_usage(
        self, env_id: int, customer_ref: str, resource_ref: str | None, usage: Usage, read_version: int
    ) -> bool:
        with self._lock:
            held = self._held(env_id, customer_ref, resource_ref)
            if held is None or not self._may_keep(env_id, customer_ref, read_version):
                return False
            held.usage = usage
            return True

    def keep_credits(
        self, env_id: int, customer_ref: str, resource_ref: str | None, credits: Credits, read_version: int
    ) -> bool:
        with self._lock:
            held = self._held(env_id, customer_ref, resource_ref)
            if held is None or not self._may_keep(env_id, customer_ref, read_version):
                return False
            held.credits = credits
            return True

    def keep_feature(self, env_id: int, feature_ref: str, view: FeatureView | None, read_version: int) -> bool:
        return self._keep_bounded(self._features, env_id, feature_ref, view, read_version)

    def keep_currency(self, env_id: int, currency_ref: str, view: CurrencyView | None, read_version: int) -> bool:
        return self._keep_bounded(self._currencies, env_id, currency_ref, view, read_version)

    def _keep_bounded(
        self, table: OrderedDict[tuple[int, str], _V], env_id: int, ref: str, view: _V, read_version: int
    ) -> bool:
        """Keep an environment-wide view (a feature's, a currency's), the least recently kept going first."""
        with self._lock:
            if not self._may_keep(env_id, None, read_version):
                return False
            table[(env_id, ref)] = view
            table.move_to_end((env_id, ref))
            while len(table) > self.max_features:
                table.popitem(last=False)
            return True

    # -- dropping what changed -----------------------------------------------------------------

    def _mark(self, key: _CustomerKey) -> None:
        self._dropped[key] = self._version
        self._dropped.move_to_end(key)
        while len(self._dropped) > 4 * self.max_customers:
            _, oldest = self._dropped.popitem(last=False)
            self._floor = max(self._floor, oldest)

    def drop_customer(self, env_id: int, customer_ref: str) -> None:
        """Every resource of the customer: a customer-level promotion counts for each of them."""
        with self._lock:
            self._version += 1
            self._customers.pop((env_id, customer_ref), None)
            self._mark((env_id, customer_ref))

    def drop_usage(self, env_id: int, customer_ref: str) -> None:
        with self._lock:
            self._version += 1
            for held in self._customers.get((env_id, customer_ref), {}).values():
                held.usage = None
            self._mark((env_id, customer_ref))

    def drop_credits(self, env_id: int, customer_ref: str) -> None:
        """A wallet of the customer moved (any resource's: the event names the customer, and balances
        are cheap to read again)."""
        with self._lock:
            self._version += 1
            for held in self._customers.get((env_id, customer_ref), {}).values():
                held.credits = None
            self._mark((env_id, customer_ref))

    def drop_features(self, env_id: int) -> None:
        """The environment's features and every customer of it (their grants carry the features)."""
        with self._lock:
            self._version += 1
            self._catalog_dropped[env_id] = self._version
            for key in [k for k in self._features if k[0] == env_id]:
                del self._features[key]
            for ckey in [k for k in self._customers if k[0] == env_id]:
                del self._customers[ckey]

    def drop_currencies(self, env_id: int) -> None:
        """The environment's currencies and every customer of it (their credits show the currencies, and
        whether a currency exists decides which credit rates count)."""
        with self._lock:
            self._version += 1
            self._catalog_dropped[env_id] = self._version
            for key in [k for k in self._currencies if k[0] == env_id]:
                del self._currencies[key]
            for ckey in [k for k in self._customers if k[0] == env_id]:
                del self._customers[ckey]

    def lost(self) -> None:
        """Changes may have been missed: forget everything, keep nothing until `caught_up`."""
        with self._lock:
            self._version += 1
            self._live = False
            self._floor = self._version
            self._customers.clear()
            self._features.clear()
            self._currencies.clear()
            self._dropped.clear()
            self._catalog_dropped.clear()

    def caught_up(self) -> None:
        """Every change committed so far has been heard (the hub read the whole log)."""
        with self._lock:
            self._version += 1
            self._floor = self._version
            self._live = True

    # -- this process's commits ----------------------------------------------------------------

    def committed(self, version: int, events: Sequence[DomainEvent]) -> None:
        """`entitle.domain_events.on_commit` listener: a write is visible to the next read here.

        Archiving or unarchiving a customer is announced as `EntitlementsChanged` too; a customer that
        does not exist is never held, so its creation needs no event."""
        for event in events:
            if isinstance(event, EntitlementsChanged):
                self.drop_customer(event.env_id, event.customer_ref)
            elif isinstance(event, UsageChanged):
                self.drop_usage(event.env_id, event.customer_ref)
            elif isinstance(event, CreditBalanceChanged):
                self.drop_credits(event.env_id, event.wallet.customer_ref)
            elif isinstance(event, FeatureChanged):
                self.drop_features(event.env_id)
            elif isinstance(event, CurrencyChanged):
                self.drop_currencies(event.env_id)
