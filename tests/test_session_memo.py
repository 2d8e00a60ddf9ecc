"""`entitle.db.memo.rows_once`: what one transaction's subscribers read again (an environment's webhook
endpoints, its billing integrations) is read once, and read again as soon as the transaction writes such
a row, whether pending, flushed or by an UPDATE statement; the next transaction reads afresh."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, update
from sqlalchemy.orm import Session

from entitle.db import Database
from entitle.environments.service import ensure_environment
from entitle.webhooks import store
from entitle.webhooks.models import WebhookEndpoint

TYPE = "customer.created"


def _endpoint(env_id: int, ref: str, enabled: bool = True) -> WebhookEndpoint:
    return WebhookEndpoint(
        environment_id=env_id,
        ref_id=ref,
        url="https://example.com/hook",
        secret_encrypted="x",
        event_types=[TYPE],
        enabled=enabled,
    )


@contextmanager
def _reads(s: Session) -> Iterator[list[str]]:
    """The endpoint queries the session sends while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM webhook_endpoints" in statement:
            seen.append(statement)

    engine = s.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _refs(s: Session, env_id: int) -> list[str]:
    return [e.ref_id for e in store.subscribed(s, env_id, TYPE)]


def test_endpoints_are_read_once_per_transaction_until_it_writes_one(db: Database) -> None:
    env_id = ensure_environment(db, "development").pk
    with db.transaction() as s, _reads(s) as reads:
        assert _refs(s, env_id) == [] and _refs(s, env_id) == []
        assert len(reads) == 1

        s.add(_endpoint(env_id, "pending"))  # not flushed yet: the memo must not hide it
        assert _refs(s, env_id) == ["pending"]
        s.add(_endpoint(env_id, "flushed"))
        s.flush()
        assert _refs(s, env_id) == ["pending", "flushed"]
        assert _refs(s, env_id) == ["pending", "flushed"]
        assert len(reads) == 3

        s.execute(update(WebhookEndpoint).where(WebhookEndpoint.ref_id == "pending").values(enabled=False))
        assert _refs(s, env_id) == ["flushed"]
        endpoint = store.get(s, env_id, "flushed")
        endpoint.enabled = False  # a change still in the unit of work
        assert _refs(s, env_id) == []
    with db.transaction() as s:
        s.execute(update(WebhookEndpoint).values(enabled=True))
    with db.read() as s, _reads(s) as reads:
        assert _refs(s, env_id) == ["pending", "flushed"]  # a new transaction reads afresh
        assert len(reads) == 1
