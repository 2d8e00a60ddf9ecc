"""Two catalog rules, through the API and the console, on SQLite and PostgreSQL:

- one id names one package in an environment: a plan and an add-on cannot share it (subscriptions name
  them by id in `planId` and `addons[].addonId`, and so do widgets and the console);
- unarchiving a product brings back the plans and add-ons its archive archived, as they were, and only
  those: one archived on its own before stays archived.

One server per database for the module: each test makes its own entities under its own ids."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from entitle.catalog.packages import service as packages
from entitle.catalog.packages.models import Package
from entitle.catalog.packages.schemas import AddonCreate
from entitle.catalog.packages.store import claim_id
from entitle.catalog.products.models import Product
from entitle.catalog.products.schemas import ProductCreate
from entitle.catalog.products.service import create_product
from entitle.db import Database
from entitle.environments.service import ensure_environment
from entitle.errors import AlreadyExists
from tests.conftest import LiveServer
from tests.support.console import csrf_of, make_user, signed_in
from tests.test_console_catalog import refused_like_the_api
from tests.test_plans import error_of

OTHER = {"plans": "addons", "addons": "plans"}


@pytest.fixture(scope="module")
def api(module_server: LiveServer) -> Iterator[httpx.Client]:
    with module_server.http() as client:
        yield client


@pytest.fixture(scope="module")
def editor(module_server: LiveServer) -> Iterator[httpx.Client]:
    email = make_user(module_server.db, "ids-editor@example.com", "editor")
    with signed_in(module_server.base_url, email) as web:
        yield web


def ok(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def product(api: httpx.Client, ref: str) -> None:
    ok(api.post("/api/v1/products", json={"id": ref, "displayName": ref.title()}))


def create(api: httpx.Client, kind: str, ref: str, product_ref: str, **extra: Any) -> httpx.Response:
    return api.post(f"/api/v1/{kind}", json={"id": ref, "displayName": ref.title(), "productId": product_ref, **extra})


def publish(api: httpx.Client, kind: str, ref: str) -> None:
    ok(api.post(f"/api/v1/{kind}/{ref}/publish", json={"migrationType": "NEW_CUSTOMERS"}))


def shown(api: httpx.Client, kind: str, ref: str) -> tuple[str, int, bool]:
    data = ok(api.get(f"/api/v1/{kind}/{ref}"))
    return data["status"], data["versionNumber"], data["isLatest"]


# -- one id, one package -------------------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["plans", "addons"])
def test_a_plan_and_an_addon_cannot_share_an_id_in_an_environment(
    module_server: LiveServer, api: httpx.Client, first: str
) -> None:
    second = OTHER[first]
    product(api, f"ids-{first}")
    ok(create(api, first, f"shared-{first}", f"ids-{first}"))

    message = error_of(create(api, second, f"shared-{first}", f"ids-{first}"), 409, "ALREADY_EXISTS")
    assert f"shared-{first}" in message
    error_of(api.get(f"/api/v1/{second}/shared-{first}"), 404, "NOT_FOUND")
    assert shown(api, first, f"shared-{first}") == ("DRAFT", 1, False)

    # An archived package keeps its id: a subscription may still name it.
    ok(create(api, first, f"kept-{first}", f"ids-{first}"))
    ok(api.post(f"/api/v1/{first}/kept-{first}/archive"))
    error_of(create(api, second, f"kept-{first}", f"ids-{first}"), 409, "ALREADY_EXISTS")

    # The rule is per environment: another one may use the id for the other kind.
    with module_server.http(module_server.key("ids-elsewhere")) as elsewhere:
        product(elsewhere, f"ids-{first}")
        ok(create(elsewhere, second, f"shared-{first}", f"ids-{first}"))


def test_a_plan_and_an_addon_created_at_once_under_one_id_let_one_through(db: Database) -> None:
    """The second create waits for the first (PostgreSQL: the id's transaction lock; SQLite: the write
    lock), then finds the id taken, instead of both finding it free."""
    env_id = ensure_environment(db, "development").pk
    create_product(db, env_id, ProductCreate(id="race-product", display_name="Race"))
    outcome: list[BaseException | None] = []

    def second() -> None:
        body = {"id": "race", "displayName": "Race", "productId": "race-product"}
        try:
            packages.create_addon(db, env_id, AddonCreate.model_validate(body))
        except AlreadyExists as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    with db.transaction() as s:
        claim_id(s, env_id, "race")  # free, and kept so until this transaction ends
        product = s.scalars(select(Product).where(Product.ref_id == "race-product")).one()
        thread = threading.Thread(target=second)
        thread.start()
        _wait_until_queued(db, thread)
        s.add(
            Package(
                environment_id=env_id,
                kind="PLAN",
                ref_id="race",
                product_pk=product.pk,
                version_number=1,
                status="DRAFT",
                is_latest=False,
                display_name="Race",
            )
        )
    thread.join()
    [refused] = outcome
    assert isinstance(refused, AlreadyExists) and refused.kind == "plan"


def _wait_until_queued(db: Database, thread: threading.Thread) -> None:
    """Until `thread` waits behind the open write transaction (or has ended, which fails the test)."""
    if db.dialect == "postgresql":
        waiting = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        with db.read() as watcher:
            while not watcher.scalar(waiting) and thread.is_alive():
                watcher.rollback()
    else:
        assert db._writers is not None
        while db._writers._next_ticket < 2 and thread.is_alive():
            threading.Event().wait(0.001)
    assert thread.is_alive(), "the second create did not wait for the first"


def test_a_pair_stored_before_the_rule_keeps_working(module_server: LiveServer, api: httpx.Client) -> None:
    """No database constraint was added (it would fail to build on such a database): a plan and an
    add-on stored under one id before keep being served, each by its own path, and sold together."""
    product(api, "legacy")
    ok(create(api, "plans", "legacy-pair", "legacy"))
    publish(api, "plans", "legacy-pair")
    env_id = ensure_environment(module_server.db, "development").pk
    with module_server.db.transaction() as s:
        product_pk = s.scalars(select(Product.pk).where(Product.ref_id == "legacy")).one()
        s.add(
            Package(
                environment_id=env_id,
                kind="ADDON",
                ref_id="legacy-pair",
                product_pk=product_pk,
                version_number=1,
                status="DRAFT",
                is_latest=False,
                display_name="Legacy add-on",
            )
        )
    publish(api, "addons", "legacy-pair")
    ok(api.patch("/api/v1/plans/legacy-pair", json={"displayName": "Legacy plan"}))
    assert ok(api.get("/api/v1/plans/legacy-pair"))["displayName"] == "Legacy plan"
    assert ok(api.get("/api/v1/addons/legacy-pair"))["displayName"] == "Legacy add-on"
    ok(api.post("/api/v1/plans/legacy-pair/draft"))
    ok(api.patch("/api/v1/plans/legacy-pair", json={"compatibleAddonIds": ["legacy-pair"]}))
    publish(api, "plans", "legacy-pair")
    ok(api.post("/api/v1/customers", json={"id": "legacy-customer"}))
    body = {"customerId": "legacy-customer", "planId": "legacy-pair", "addons": [{"id": "legacy-pair", "quantity": 1}]}
    sold = ok(api.post("/api/v1/subscriptions", json=body))["subscription"]
    assert sold["planId"] == "legacy-pair" and [a["id"] for a in sold["addons"]] == ["legacy-pair"]


def test_the_console_refuses_a_plan_with_an_addons_id_like_the_api(api: httpx.Client, editor: httpx.Client) -> None:
    product(api, "ids-console")
    ok(create(api, "addons", "ids-console-boost", "ids-console"))
    token = csrf_of(editor)
    form = {"csrf_token": token, "id": "ids-console-boost", "display_name": "Boost", "product_id": "ids-console"}
    refused_like_the_api(
        editor.post("/console/plans", data=form), create(api, "plans", "ids-console-boost", "ids-console")
    )
    error_of(api.get("/api/v1/plans/ids-console-boost"), 404, "NOT_FOUND")


def test_duplicating_a_product_onto_an_id_the_other_kind_holds_is_refused_whole(api: httpx.Client) -> None:
    product(api, "dup-src")
    ok(create(api, "plans", "pro", "dup-src"))
    product(api, "dup-holder")
    ok(create(api, "addons", "dup-copy-pro", "dup-holder"))

    message = error_of(
        api.post("/api/v1/products/dup-src/duplicate", json={"targetId": "dup-copy"}), 409, "ALREADY_EXISTS"
    )
    assert "dup-copy-pro" in message
    error_of(api.get("/api/v1/products/dup-copy"), 404, "NOT_FOUND")
    error_of(api.get("/api/v1/plans/dup-copy-pro"), 404, "NOT_FOUND")


# -- archive and unarchive a product ------------------------------------------------------------------------


def _granted(api: httpx.Client, customer: str, feature: str) -> bool:
    answer = ok(api.get(f"/api/v1/customers/{customer}/entitlements/check", params={"featureId": feature}))
    return bool(answer["isGranted"])


def test_unarchiving_a_product_brings_back_what_its_archive_archived_and_only_that(api: httpx.Client) -> None:
    product(api, "arc")
    ok(api.post("/api/v1/features", json={"id": "arc-sso", "displayName": "SSO", "featureType": "BOOLEAN"}))
    ok(create(api, "plans", "arc-base", "arc"))
    ok(api.post("/api/v1/plans/arc-base/entitlements", json={"entitlements": [{"type": "FEATURE", "id": "arc-sso"}]}))
    publish(api, "plans", "arc-base")
    ok(create(api, "plans", "arc-pro", "arc", parentPlanId="arc-base"))
    publish(api, "plans", "arc-pro")
    ok(create(api, "plans", "arc-sketch", "arc"))  # never published
    ok(create(api, "addons", "arc-boost", "arc"))
    publish(api, "addons", "arc-boost")
    ok(create(api, "plans", "arc-retired", "arc"))
    publish(api, "plans", "arc-retired")
    ok(api.post("/api/v1/plans/arc-retired/archive"))  # on its own, before the product
    ok(api.post("/api/v1/plans/arc-base/draft"))  # work in progress on a published plan

    ok(api.post("/api/v1/customers", json={"id": "arc-customer"}))
    ok(api.post("/api/v1/subscriptions", json={"customerId": "arc-customer", "planId": "arc-pro"}))
    assert _granted(api, "arc-customer", "arc-sso")  # inherited from arc-base

    ok(api.post("/api/v1/products/arc/archive"))
    for kind, ref in [("plans", "arc-base"), ("plans", "arc-pro"), ("plans", "arc-sketch"), ("addons", "arc-boost")]:
        assert shown(api, kind, ref)[0] == "ARCHIVED", ref
    assert not _granted(api, "arc-customer", "arc-sso")  # an archived parent grants nothing more

    assert ok(api.post("/api/v1/products/arc/unarchive"))["status"] == "PUBLISHED"
    # As each was: published versions published (the latest still latest), a never-published plan a draft.
    # The draft of a published plan was discarded by the archive, as archiving the plan itself does.
    assert shown(api, "plans", "arc-base") == ("PUBLISHED", 1, True)
    assert shown(api, "plans", "arc-pro") == ("PUBLISHED", 1, True)
    assert shown(api, "plans", "arc-sketch") == ("DRAFT", 1, False)
    assert shown(api, "addons", "arc-boost") == ("PUBLISHED", 1, True)
    assert shown(api, "plans", "arc-retired")[0] == "ARCHIVED"
    assert _granted(api, "arc-customer", "arc-sso")  # inherits again
    # Live again: sold, and edited through drafts.
    ok(api.post("/api/v1/customers", json={"id": "arc-later"}))
    ok(api.post("/api/v1/subscriptions", json={"customerId": "arc-later", "planId": "arc-base"}))
    ok(api.post("/api/v1/plans/arc-pro/draft"))

    # A second archive and unarchive leave the plan archived on its own where it was.
    ok(api.post("/api/v1/products/arc/archive"))
    ok(api.post("/api/v1/products/arc/unarchive"))
    assert shown(api, "plans", "arc-retired")[0] == "ARCHIVED"
    assert shown(api, "plans", "arc-pro") == ("PUBLISHED", 1, True)  # its new draft went with the archive


def test_archiving_a_parent_plan_on_its_own_is_heard_by_the_customers_inheriting_from_it(api: httpx.Client) -> None:
    product(api, "heir")
    ok(api.post("/api/v1/features", json={"id": "heir-sso", "displayName": "SSO", "featureType": "BOOLEAN"}))
    ok(create(api, "plans", "heir-base", "heir"))
    ok(api.post("/api/v1/plans/heir-base/entitlements", json={"entitlements": [{"type": "FEATURE", "id": "heir-sso"}]}))
    publish(api, "plans", "heir-base")
    ok(create(api, "plans", "heir-kid", "heir", parentPlanId="heir-base"))
    publish(api, "plans", "heir-kid")
    ok(api.post("/api/v1/customers", json={"id": "heir-customer"}))
    ok(api.post("/api/v1/subscriptions", json={"customerId": "heir-customer", "planId": "heir-kid"}))
    assert _granted(api, "heir-customer", "heir-sso")  # inherited, and now held by the server's snapshot

    # The child first (a parent is refused while a live plan builds on it), the customer staying on it.
    ok(api.post("/api/v1/plans/heir-kid/archive"))
    assert _granted(api, "heir-customer", "heir-sso")
    ok(api.post("/api/v1/plans/heir-base/archive"))
    # An archived parent grants nothing more: the held answer is dropped, as a product's archive drops it.
    assert not _granted(api, "heir-customer", "heir-sso")
    listed = ok(api.get("/api/v1/customers/heir-customer/entitlements"))
    assert "heir-sso" not in {e["feature"]["id"] for e in listed["entitlements"] if e.get("feature")}


def test_unarchiving_a_product_that_is_not_archived_changes_nothing(api: httpx.Client) -> None:
    product(api, "arc-live")
    ok(create(api, "plans", "arc-live-solo", "arc-live"))
    ok(api.post("/api/v1/plans/arc-live-solo/archive"))
    assert ok(api.post("/api/v1/products/arc-live/unarchive"))["status"] == "PUBLISHED"
    assert shown(api, "plans", "arc-live-solo")[0] == "ARCHIVED"
