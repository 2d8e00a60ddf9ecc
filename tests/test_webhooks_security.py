"""Webhook security: where deliveries may go (SSRF policy), and signing secrets encrypted at rest."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from entitle.config import Settings
from entitle.db import Database
from entitle.db.migrate import alembic_config, upgrade
from entitle.db.pagination import PageRequest
from entitle.environments.service import ensure_environment
from entitle.jobs.service import Worker
from entitle.secrets import ENV_VAR, secret_box
from entitle.webhooks import delivery, service
from entitle.webhooks.delivery import DeliveryRefused, pinned_target
from entitle.webhooks.models import WebhookEndpoint
from entitle.webhooks.rules import address_refusal, ascii_host, ascii_url, literal_address, url_refusal
from entitle.webhooks.schemas import WebhookCreate
from entitle.webhooks.service import WebhookUrlNotAllowed
from tests.conftest import LiveServer
from tests.test_webhooks import SECRET_KEY, create_hook
from tests.test_webhooks import receivers as receivers


@pytest.fixture(autouse=True)
def webhook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unlike the other webhook tests, the server here runs with the production policy."""
    monkeypatch.delenv("ENTITLE_WEBHOOKS_ALLOW_PRIVATE", raising=False)
    monkeypatch.setenv(ENV_VAR, SECRET_KEY)


# -- the address rule, over whole ranges ------------------------------------------------------------

BLOCKED = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
    "2001:db8::/32",
]
PUBLIC = ["1.1.1.0/24", "8.8.0.0/16", "93.184.0.0/16", "151.101.0.0/16", "2606:4700::/32", "2a00:1450::/32"]
PRIVATE_ONLY = ["10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "::1/128"]
NEVER = ["224.0.0.0/4", "ff00::/8", "0.0.0.0/32", "::/128"]


def in_networks(cidrs: list[str]) -> st.SearchStrategy[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    def pick(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> st.SearchStrategy[Any]:
        first = int(network.network_address)
        return st.integers(first, first + network.num_addresses - 1).map(
            lambda n: ipaddress.ip_address(n) if network.version == 4 else ipaddress.IPv6Address(n)
        )

    return st.one_of([pick(ipaddress.ip_network(c)) for c in cidrs])


@given(in_networks(BLOCKED))
def test_blocked_ranges_are_refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert address_refusal(ip) is not None


@given(in_networks([c for c in BLOCKED if ":" not in c]))
def test_blocked_ipv4_hidden_in_ipv6_is_refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    packed = int(ip)
    for wrapped in (
        ipaddress.IPv6Address((0xFFFF << 32) | packed),  # ::ffff:a.b.c.d
        ipaddress.IPv6Address((0x64FF9B << 96) | packed),  # NAT64 64:ff9b::a.b.c.d
        ipaddress.IPv6Address((0x2002 << 112) | (packed << 80)),  # 6to4 2002:aabb:ccdd::
    ):
        assert address_refusal(wrapped) is not None, wrapped


@given(in_networks(PUBLIC))
def test_public_addresses_are_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert address_refusal(ip) is None
    assert address_refusal(ip, allow_private=True) is None


@given(in_networks(PRIVATE_ONLY))
def test_allow_private_lifts_private_ranges(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert address_refusal(ip) is not None
    assert address_refusal(ip, allow_private=True) is None


@given(in_networks(NEVER))
def test_multicast_and_unspecified_are_never_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert address_refusal(ip, allow_private=True) is not None


@pytest.mark.parametrize("spelling", ["127.0.0.1", "2130706433", "0x7f.1", "0177.0.0.1", "127.1", "[::ffff:7f00:1]"])
def test_legacy_spellings_of_loopback_are_read_as_addresses(spelling: str) -> None:
    ip = literal_address(spelling)
    assert ip is not None and address_refusal(ip) is not None
    assert url_refusal(f"https://{spelling}/hook") is not None


@pytest.mark.parametrize(
    ("url", "allow_private", "allowed"),
    [
        ("https://hooks.example.com/x", False, True),
        ("https://93.184.216.34/x", False, True),
        ("http://hooks.example.com/x", False, False),
        ("http://hooks.example.com/x", True, False),  # plain http only to loopback, even in development
        ("http://127.0.0.1:8080/x", False, False),
        ("http://127.0.0.1:8080/x", True, True),
        ("http://localhost:8080/x", True, True),
        ("https://localhost/x", False, False),
        ("https://10.1.2.3/x", False, False),
        ("https://169.254.169.254/latest/meta-data", False, False),
        ("https://[fd00::1]/x", False, False),
        ("https://[::ffff:10.0.0.1]/x", False, False),
        ("ftp://hooks.example.com/x", False, False),
    ],
)
def test_url_policy(url: str, allow_private: bool, allowed: bool) -> None:
    assert (url_refusal(url, allow_private=allow_private) is None) is allowed


# -- internationalized host names: stored, shown, checked and called in their ASCII (IDNA) form -------------


def full_width(ascii_text: str) -> str:
    """The text in full-width forms (U+FF01 to U+FF5E), which UTS #46 maps back to ASCII."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in ascii_text)


IDEOGRAPHIC_FULL_STOP = "\u3002"
# (typed, stored): UTS #46 maps case, full-width forms and ideographic full stops as browsers do.
IDN_HOSTS = [
    ("https://Bücher.example/hook", "https://xn--bcher-kva.example/hook"),
    ("https://faß.example:8443/in?x=ü", "https://xn--fa-hia.example:8443/in?x=ü"),  # IDNA 2008: not "fass"
    ("https://user@例え。テスト/x", "https://user@xn--r8jz45g.xn--zckzah/x"),
    (f"https://hooks.{full_width('example')}.com/x", "https://hooks.example.com/x"),
]
# Host names that are loopback or private addresses once in ASCII form.
IDN_DISGUISED = [
    f"https://{full_width('127')}{IDEOGRAPHIC_FULL_STOP}{full_width('0.0.1')}/hook",
    f"https://{full_width('localhost')}/hook",
    f"https://{full_width('10.0.0.1')}/hook",
]
NOT_IDNA = [
    "https://☃.example/hook",
    "https://xn--zz.example/hook",
    "https://a\u200db.example/hook",
    "https://-ü.example/x",
]


@pytest.mark.parametrize(("typed", "stored"), IDN_HOSTS)
def test_an_idn_host_is_written_in_its_ascii_form(typed: str, stored: str) -> None:
    assert ascii_url(typed) == stored
    assert ascii_url(stored) == stored
    assert WebhookCreate.model_validate({"url": typed, "eventTypes": ["customer.created"]}).url == stored


@pytest.mark.parametrize("url", IDN_DISGUISED)
def test_an_idn_host_is_checked_in_its_ascii_form(url: str) -> None:
    assert url_refusal(url) is not None
    with pytest.raises(DeliveryRefused):  # a row stored as typed before, delivered now
        pinned_target(url, allow_private=False)


@pytest.mark.parametrize("url", NOT_IDNA)
def test_a_host_that_is_not_valid_idna_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="IDNA"):
        ascii_url(url)
    assert url_refusal(url) is not None


@given(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=30))
def test_the_ascii_form_of_a_host_is_ascii_and_its_own_ascii_form(host: str) -> None:
    try:
        converted = ascii_host(host)
    except ValueError:
        return
    assert converted.isascii() and ascii_host(converted) == converted
    if host.isascii():
        assert converted == host  # an ASCII name is left as typed


def test_an_idn_host_is_resolved_and_called_in_its_ascii_form(monkeypatch: pytest.MonkeyPatch) -> None:
    # Python's own "idna" codec (IDNA 2003, what getaddrinfo and ssl use for a str) would ask for fass.example.
    fake_dns(monkeypatch, {"xn--fa-hia.example": ["93.184.216.34"]})
    target, host_header, tls_name = pinned_target("https://faß.example:8443/in", allow_private=False)
    assert str(target) == "https://93.184.216.34:8443/in"
    assert (host_header, tls_name) == ("xn--fa-hia.example:8443", "xn--fa-hia.example")


def test_the_api_stores_and_shows_an_idn_host_in_ascii_and_refuses_one_that_is_not_idna(
    server: LiveServer, api: httpx.Client
) -> None:
    hook = create_hook(api, "https://Bücher.example/hook", ["customer.created"])
    assert hook["url"] == "https://xn--bcher-kva.example/hook"
    assert api.get(f"/api/v1/webhooks/{hook['id']}").json()["data"]["url"] == "https://xn--bcher-kva.example/hook"
    changed = api.patch(f"/api/v1/webhooks/{hook['id']}", json={"url": "https://faß.example/x"})
    assert changed.status_code == 200 and changed.json()["data"]["url"] == "https://xn--fa-hia.example/x"
    for url in NOT_IDNA:
        refused = api.post("/api/v1/webhooks", json={"url": url, "eventTypes": ["customer.created"]})
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, "INVALID_ARGUMENT"), url
        assert "IDNA" in refused.json()["error"]["message"]
    for url in IDN_DISGUISED:
        refused = api.post("/api/v1/webhooks", json={"url": url, "eventTypes": ["customer.created"]})
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, "WEBHOOK_URL_NOT_ALLOWED"), url
    listed = api.get("/api/v1/webhooks").json()["data"]
    assert [h["url"] for h in listed] == ["https://xn--fa-hia.example/x"]


def test_the_migration_writes_idn_hosts_stored_before_in_ascii(db: Database) -> None:
    """0033 on endpoints stored as typed: an internationalized host in ASCII form, the rest of the URL
    as it was; an ASCII URL, and one whose host is not valid IDNA (delivery refuses it), untouched."""
    typed = {
        "wh_idn": ("https://Bücher.example/in?x=ü", "https://xn--bcher-kva.example/in?x=ü"),
        "wh_ascii": ("https://Hooks.example.com/x", "https://Hooks.example.com/x"),
        "wh_bad": ("https://☃.example/x", "https://☃.example/x"),
    }
    env_id = ensure_environment(db, "development").pk
    with db.transaction() as s:
        for ref, (url, _) in typed.items():
            s.add(
                WebhookEndpoint(
                    environment_id=env_id, ref_id=ref, url=url, secret_encrypted="x", event_types=[], enabled=True
                )
            )
    migration = ScriptDirectory.from_config(alembic_config(db.url)).get_revision("0033_webhook_ascii_hosts")
    assert migration is not None and migration.module is not None
    with db.write_engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        migration.module.upgrade()
    with db.read() as s:
        stored = dict(s.execute(sa.select(WebhookEndpoint.ref_id, WebhookEndpoint.url)).tuples().all())
    assert stored == {ref: after for ref, (_, after) in typed.items()}


# -- resolution at delivery time: the checked address is the one connected to -------------------------


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        family = socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answers[host]]

    monkeypatch.setattr(delivery.socket, "getaddrinfo", getaddrinfo)


def test_delivery_connects_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"hooks.example.com": ["93.184.216.34"]})
    target, host_header, tls_name = pinned_target("https://hooks.example.com:8443/in?x=1", allow_private=False)
    assert str(target) == "https://93.184.216.34:8443/in?x=1"
    assert (host_header, tls_name) == ("hooks.example.com:8443", "hooks.example.com")


@pytest.mark.parametrize("answer", [["10.0.0.7"], ["93.184.216.34", "127.0.0.1"], ["169.254.169.254"]])
def test_a_name_resolving_to_a_private_address_is_refused(monkeypatch: pytest.MonkeyPatch, answer: list[str]) -> None:
    fake_dns(monkeypatch, {"rebind.example.com": answer})
    with pytest.raises(DeliveryRefused, match=r"rebind\.example\.com resolves to"):
        pinned_target("https://rebind.example.com/hook", allow_private=False)


# -- the API and the worker ------------------------------------------------------------------------------


def test_create_and_update_refuse_bad_urls(
    server: LiveServer, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    for url in ("https://169.254.169.254/latest", "https://10.0.0.1/hook", "http://hooks.example.com/x"):
        response = api.post("/api/v1/webhooks", json={"url": url, "eventTypes": ["customer.created"]})
        assert (response.status_code, response.json()["error"]["code"]) == (400, "WEBHOOK_URL_NOT_ALLOWED"), url
    hook = create_hook(api, "https://hooks.example.com/x", ["customer.created"])
    response = api.patch(f"/api/v1/webhooks/{hook['id']}", json={"url": "https://[::1]/x"})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "WEBHOOK_URL_NOT_ALLOWED")
    assert api.get(f"/api/v1/webhooks/{hook['id']}").json()["data"]["url"] == "https://hooks.example.com/x"


def test_without_the_setting_loopback_is_refused_at_create(server: LiveServer) -> None:
    settings = Settings(database_url=server.db.url, data_dir=Path("/nonexistent"), console_base_url="x")
    assert settings.webhooks_allow_private is False  # off unless the environment turns it on
    env = ensure_environment(server.db, "development").pk
    body = WebhookCreate.model_validate({"url": "http://127.0.0.1:9/hook", "eventTypes": ["customer.created"]})
    with pytest.raises(WebhookUrlNotAllowed, match="https"):
        service.create_webhook(server.db, env, body, box=secret_box(settings.data_dir), allow_private=False)
    assert service.list_webhooks(server.db, env, PageRequest()).items == []


def test_a_refused_delivery_is_logged_and_not_retried(
    server: LiveServer, api: httpx.Client, receivers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = receivers()
    env = ensure_environment(server.db, "development").pk
    body = WebhookCreate.model_validate({"url": receiver.url, "eventTypes": ["customer.created"]})
    # Created by a development server (the setting on); delivered by a worker running without it.
    created, _ = service.create_webhook(server.db, env, body, box=secret_box(Path("/nonexistent")), allow_private=True)
    hook = {"id": created.ref_id}
    api.post("/api/v1/customers", json={"id": "c1"})
    Worker(server.db).drain()
    assert receiver.requests == []
    log = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["data"]
    assert len(log) == 1
    assert log[0]["succeeded"] is False and log[0]["statusCode"] is None
    assert log[0]["error"].startswith("refused: ") and "loopback" in log[0]["error"]
    job = api.get("/api/v1/jobs").json()["data"][0]
    assert (job["kind"], job["status"], job["attempts"]) == ("webhooks.deliver", "DEAD", 1)


# -- secrets at rest -----------------------------------------------------------------------------------------


def test_secrets_are_stored_encrypted(server: LiveServer, api: httpx.Client) -> None:
    hook = create_hook(api, "https://hooks.example.com/x", ["customer.created"])
    given_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    create_hook(api, "https://hooks.example.com/y", ["customer.created"], secret=given_secret)
    with server.db.write_engine.connect() as conn:
        table = sa.Table("webhook_endpoints", sa.MetaData(), autoload_with=conn)
        rows = [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.pk))]
    assert "secret" not in rows[0]
    dump = repr(rows)
    for secret in (hook["secret"], given_secret, hook["secret"].removeprefix("whsec_")):
        assert secret not in dump
    box = secret_box(Path("/nonexistent"))  # the key is ENTITLE_SECRET_KEY here
    assert [box.decrypt(r["secret_encrypted"]) for r in rows] == [hook["secret"], given_secret]
    # Shown once: no read or list answer carries it.
    assert all("secret" not in h for h in api.get("/api/v1/webhooks").json()["data"])


def test_migration_encrypts_existing_secrets(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """0014 on a database holding plain secrets: they come out encrypted, the plain column is gone."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        admin = sa.create_engine(cluster.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("DROP DATABASE IF EXISTS entitle_migration_0014 WITH (FORCE)"))
            conn.execute(sa.text("CREATE DATABASE entitle_migration_0014"))
        admin.dispose()
        url = cluster.url("entitle_migration_0014")
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(ENV_VAR, key)
    upgrade(url, "0013_push")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO environments (name, is_production, created_at, updated_at) VALUES ('development', "
                "false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        env = conn.execute(sa.text("SELECT pk FROM environments")).scalar_one()
        for n, secret in enumerate(["whsec_AAAA", "whsec_BBBB"]):
            conn.execute(
                sa.text(
                    "INSERT INTO webhook_endpoints (ref_id, url, secret, event_types, enabled, environment_id, "
                    "created_at, updated_at) VALUES (:ref, 'https://x.test', :secret, '[]', true, :env, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"ref": f"wh_{n}", "secret": secret, "env": env},
            )
    upgrade(url, "0014_webhook_secrets")
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("webhook_endpoints")}
        stored = conn.execute(sa.text("SELECT secret_encrypted FROM webhook_endpoints ORDER BY ref_id")).scalars()
        tokens = list(stored)
    engine.dispose()
    assert "secret" not in columns and "secret_encrypted" in columns
    assert all(not t.startswith("whsec_") for t in tokens)
    assert [secret_box(Path("/nonexistent")).decrypt(t) for t in tokens] == ["whsec_AAAA", "whsec_BBBB"]


def test_deliveries_verify_certificates_and_hostnames_with_one_context_per_process() -> None:
    context = delivery._tls()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # the CA bundle is loaded
    assert delivery._tls() is context  # made once: not a CA bundle load per delivery
