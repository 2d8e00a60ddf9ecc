"""Version history of plans and add-ons: every version, and one version whole (what it granted and
charged), for comparing a draft with what customers have."""

from __future__ import annotations

from dataclasses import dataclass

from entitle.catalog.packages import store
from entitle.catalog.packages.models import Package, PackageCharge, PackageView
from entitle.catalog.packages.service import NOUNS, PackageKind
from entitle.db import Database
from entitle.errors import NotFound


@dataclass(frozen=True)
class VersionDetail:
    """One version with its entitlements (in `view`) and all of its charges, base and overage."""

    view: PackageView
    charges: list[PackageCharge]


def list_versions(db: Database, env_id: int, kind: PackageKind, ref: str) -> list[Package]:
    """Every version of a plan or add-on, newest first."""
    with db.read() as s:
        found = store.versions(s, env_id, kind, ref)
        if not found:
            raise NotFound(NOUNS[kind], ref)
        return list(reversed(found))


def get_version(db: Database, env_id: int, kind: PackageKind, ref: str, version_number: int) -> VersionDetail:
    with db.read() as s:
        found = store.versions(s, env_id, kind, ref)
        if not found:
            raise NotFound(NOUNS[kind], ref)
        version = next((v for v in found if v.version_number == version_number), None)
        if version is None:
            raise NotFound(f"version of {NOUNS[kind]} '{ref}'", str(version_number))
        return VersionDetail(store.view(s, version), store.charges_of(s, version.pk))


def latest_published(db: Database, env_id: int, kind: PackageKind, ref: str) -> VersionDetail | None:
    """The version new customers get (None before the first publish), to set a draft beside it."""
    with db.read() as s:
        version = store.latest_published(s, env_id, kind, ref)
        if version is None:
            return None
        return VersionDetail(store.view(s, version), store.charges_of(s, version.pk))
