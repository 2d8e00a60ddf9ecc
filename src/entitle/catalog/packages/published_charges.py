"""The charges of a published plan or add-on version, kept per process.

A published version never changes (`publishing.py`): an edit is a new draft, published as a new version
row with its own charges, and archiving a version changes its status, not its charges. What one read of a
published version's charges found therefore holds in every process for as long as the version exists, and
needs no invalidation. The key is the database, the version's row and the instant that row was created, so
a database made again under the same URL (or a reused key) never answers with another row's charges.
Drafts are read every time.

The rows kept are detached from the session that read them: plain values, read-only, shared between
threads. At most `MAX_VERSIONS` versions are kept, least recently used first out (a version's charges
take a few KiB: the bound is a few MiB).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime

from sqlalchemy.orm import Session

from entitle.catalog.packages import store
from entitle.catalog.packages.models import ARCHIVED, PUBLISHED, Package, PackageCharge

MAX_VERSIONS = 2048

_Key = tuple[str, int, datetime]
_kept: OrderedDict[_Key, tuple[PackageCharge, ...]] = OrderedDict()
_lock = threading.Lock()


def charges_of(s: Session, package: Package) -> list[PackageCharge]:
    """`store.charges_of(s, package.pk)`: read once per process for a published (or archived) version."""
    if package.status not in (PUBLISHED, ARCHIVED):
        return store.charges_of(s, package.pk)
    key = (s.get_bind().engine.url.render_as_string(hide_password=False), package.pk, package.created_at)
    with _lock:
        found = _kept.get(key)
        if found is not None:
            _kept.move_to_end(key)
            return list(found)
    read = store.charges_of(s, package.pk)
    for charge in read:
        s.expunge(charge)  # a plain copy now: no later commit or rollback of this session touches it
    with _lock:
        _kept[key] = tuple(read)
        while len(_kept) > MAX_VERSIONS:
            _kept.popitem(last=False)
    return list(read)
