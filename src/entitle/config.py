"""Runtime settings, read from the environment once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

# The console's pages of the entities Entitle creates at a billing provider, under the public URL: the
# `entitleEntityUrl` metadata those objects carry links back to them.
CONSOLE_PAGES = {
    "CUSTOMER": "customers",
    "SUBSCRIPTION": "subscriptions",
    "PLAN": "plans",
    "ADDON": "addons",
    "COUPON": "coupons",
}


@dataclass(frozen=True)
class Settings:
    database_url: str
    data_dir: Path
    # Where people reach this Entitle (ENTITLE_PUBLIC_URL): console links, Checkout's default return page.
    console_base_url: str
    # Run a job worker inside `entitle serve` (default on SQLite; on PostgreSQL run `entitle worker`).
    embedded_worker: bool = False
    # Let webhooks reach private, loopback and link-local addresses, and plain http to loopback
    # (local development and tests only): ENTITLE_WEBHOOKS_ALLOW_PRIVATE=true.
    webhooks_allow_private: bool = field(default_factory=lambda: webhooks_allow_private())
    # Where Stripe Checkout sends the customer when provisioning opens one without `checkoutOptions`
    # (a paid plan and no payment method): ENTITLE_CHECKOUT_SUCCESS_URL, ENTITLE_CHECKOUT_CANCEL_URL.
    checkout_success_url: str | None = None
    checkout_cancel_url: str | None = None
    # Once started, move every object alive then (modules, models, routes: ~230,000) out of the cyclic
    # garbage collector's sight (`gc.freeze`), so that a full collection does not pause a request for
    # about 130 ms of CPU. On for `entitle serve`; off for apps made in a longer-lived process (tests).
    freeze_startup_objects: bool = False
    # The widgets' sample page, `/demo`: it makes a demo customer and hands any visitor a client key and
    # that customer's token, so a deployment serves it only when asked (ENTITLE_DEMO_PAGE=on; `make run`
    # does). Apps made in tests serve it.
    demo_page: bool = True

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def webhooks_allow_private() -> bool:
    return os.environ.get("ENTITLE_WEBHOOKS_ALLOW_PRIVATE", "").strip().lower() in ("1", "true", "yes", "on")


def load_settings() -> Settings:
    data_dir = Path(os.environ.get("ENTITLE_DATA_DIR", ".entitle")).resolve()
    url = os.environ.get("ENTITLE_DATABASE_URL") or f"sqlite:///{data_dir / 'entitle.db'}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        # Always drive PostgreSQL through psycopg 3, whatever scheme the operator wrote.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    # ENTITLE_CONSOLE_URL: the setting's former name, still read when the new one is not set.
    console = os.environ.get("ENTITLE_PUBLIC_URL") or os.environ.get("ENTITLE_CONSOLE_URL") or "http://127.0.0.1:8000"
    embedded = os.environ.get("ENTITLE_EMBEDDED_WORKER", "auto").lower()
    run_worker = url.startswith("sqlite") if embedded == "auto" else embedded in ("1", "true", "yes", "on")
    return Settings(
        database_url=url,
        data_dir=data_dir,
        console_base_url=console.rstrip("/"),
        embedded_worker=run_worker,
        checkout_success_url=os.environ.get("ENTITLE_CHECKOUT_SUCCESS_URL", "").strip() or None,
        checkout_cancel_url=os.environ.get("ENTITLE_CHECKOUT_CANCEL_URL", "").strip() or None,
        freeze_startup_objects=True,
        demo_page=os.environ.get("ENTITLE_DEMO_PAGE", "").strip().lower() in ("1", "true", "yes", "on"),
    )


def console_page_url(public_url: str, entity_type: str, ref: str) -> str:
    """The console page of an entity (`CONSOLE_PAGES`), as the billing provider's objects link to it."""
    return f"{public_url.rstrip('/')}/console/{CONSOLE_PAGES[entity_type]}/{quote(ref, safe='')}"
