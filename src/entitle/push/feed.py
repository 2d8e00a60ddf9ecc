"""The change log, read by the hub, keeps this process's entitlement snapshot exact: what another
process committed is dropped from memory as soon as the hub reads it (see docs/architecture.md,
"The entitlement snapshot"); and likewise what it knows environments lack (`entitle.environments.facts`)."""

from __future__ import annotations

from entitle.entitlements.snapshot import Snapshot
from entitle.environments import facts
from entitle.push import service
from entitle.push.models import (
    KIND_CREDITS,
    KIND_CURRENCIES,
    KIND_ENTITLEMENTS,
    KIND_FEATURES,
    KIND_SETTINGS,
    KIND_USAGE,
)
from entitle.push.schemas import Item


class SnapshotFeed:
    """A hub `Watcher` for one snapshot."""

    def __init__(self, snapshot: Snapshot, database_url: str) -> None:
        self.snapshot = snapshot
        self.database = service.database_key(database_url)

    def changed(self, items: list[Item]) -> None:
        # This process's own changes reached the snapshot at commit (`Snapshot.committed`).
        ours = service.written_here(self.database, items)
        for item in items:
            if item.kind == KIND_SETTINGS:
                # Ours too: the hub may read the row before the commit's own drop has run here, and the
                # log's position moves past it below (facts are trusted up to that position).
                facts.dropped(self.database, item.environment_id, str(item.data.get("fact")))
            elif item.id in ours:
                continue
            elif item.kind == KIND_ENTITLEMENTS:
                self.snapshot.drop_customer(item.environment_id, item.customer_ref)
            elif item.kind == KIND_USAGE:
                self.snapshot.drop_usage(item.environment_id, item.customer_ref)
            elif item.kind == KIND_CREDITS:
                self.snapshot.drop_credits(item.environment_id, item.customer_ref)
            elif item.kind == KIND_FEATURES:
                self.snapshot.drop_features(item.environment_id)
            elif item.kind == KIND_CURRENCIES:
                self.snapshot.drop_currencies(item.environment_id)
        if items:
            facts.heard_up_to(self.database, items[-1].id)

    # What the process knows environments lack (`entitle.environments.facts`) is kept exact by the same
    # reading of the log: lost and caught up with the snapshot.
    def lost(self) -> None:
        self.snapshot.lost()
        facts.lost(self.database, self)

    def caught_up(self) -> None:
        self.snapshot.caught_up()
        facts.caught_up(self.database, self)
