"""The delivery job: one signed POST per attempt, logged; a non-2xx answer raises so the queue retries.

Before each attempt the host is resolved and every address checked (`rules.address_refusal`); the
request then goes to the checked address (the TLS name and Host header stay the URL's), so a DNS
answer that changes between the check and the connection (rebinding) cannot reach a refused address.
A refused URL or address is logged as a failed attempt and the job is DEAD at once: retrying would
not change the answer.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import time
from datetime import UTC, datetime
from functools import cache

import httpx
from standardwebhooks import Webhook

import entitle.webhooks.scheduled  # noqa: F401  (registers the timed-event jobs beside delivery)
from entitle.config import load_settings
from entitle.db import Database
from entitle.jobs.service import JobContext, PermanentFailure, register
from entitle.secrets import secret_box
from entitle.webhooks.models import JOB_DELIVER, WebhookDelivery, WebhookEndpoint
from entitle.webhooks.rules import IPAddress, address_refusal, ascii_url, customer_of, literal_address, url_refusal

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
EXCERPT = 1000
USER_AGENT = "Entitle-Webhooks/1"


class DeliveryFailed(Exception):
    pass


class DeliveryRefused(PermanentFailure):
    pass


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host resolves to (a literal address is itself)."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    return found


def pinned_target(url: str, allow_private: bool) -> tuple[httpx.URL, str, str]:
    """The URL to connect to (host replaced by a checked address), the Host header and the TLS name.

    Raises DeliveryRefused when the policy forbids the URL or any address the host resolves to (an
    answer mixing public and private addresses is refused whole), OSError when resolution fails.
    """
    reason = url_refusal(url, allow_private=allow_private)
    if reason is not None:
        raise DeliveryRefused(f"refused: {reason}")
    # A URL stored before hosts were kept in ASCII may hold an internationalized name; `raw_host` is the
    # IDNA 2008 form the checks above judged (`host` would be decoded again, and a str given to
    # getaddrinfo or ssl is encoded by Python's IDNA 2003 codec: another name for some).
    parsed = httpx.URL(ascii_url(url))
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = resolve(host, port)
    if not addresses:
        raise OSError(f"{host} resolved to no address")
    for ip in addresses:
        why = address_refusal(ip, allow_private=allow_private)
        if why is not None:
            raise DeliveryRefused(f"refused: {host} resolves to {ip}, {why}")
    host_header = host if parsed.port is None else f"{host}:{parsed.port}"
    if ":" in host and parsed.port is None:
        host_header = f"[{host}]"
    elif ":" in host:
        host_header = f"[{host}]:{parsed.port}"
    return parsed.copy_with(host=str(addresses[0])), host_header, host


@cache
def _tls() -> ssl.SSLContext:
    """httpx's own default verification (its CA bundle, no environment overrides), made once per process: a
    client left to make it loads the CA bundle again, ~20 ms of CPU, more than the rest of a delivery."""
    return httpx.create_ssl_context(trust_env=False)


def _body(event: dict[str, object]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


@register(JOB_DELIVER)
def deliver(db: Database, ctx: JobContext) -> None:
    event = ctx.payload["event"]
    with db.read() as s:
        endpoint = s.get(WebhookEndpoint, ctx.payload["endpoint"])
        if endpoint is None or endpoint.environment_id != ctx.environment_id or not endpoint.enabled:
            return  # deleted or disabled since: nothing to send
        url, secret_encrypted, endpoint_pk = endpoint.url, endpoint.secret_encrypted, endpoint.pk
    settings = load_settings()
    secret = secret_box(settings.data_dir).decrypt(secret_encrypted)
    body = _body(event)
    # The signature timestamp is the wall clock of the send, not Entitle's (injectable) clock: the
    # receiver checks it against its own clock to refuse replays.
    sent_at = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event["id"],
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event["id"], sent_at, body),
    }
    status: int | None = None
    excerpt: str | None = None
    error: str | None = None
    refused = False
    started = time.monotonic()
    try:
        target, host_header, tls_name = pinned_target(url, settings.webhooks_allow_private)
        with (
            httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False, verify=_tls()) as client,
            client.stream(
                "POST",
                target,
                content=body.encode(),
                headers={**headers, "host": host_header},
                extensions={"sni_hostname": tls_name},
            ) as response,
        ):
            status = response.status_code
            head = b""
            for part in response.iter_bytes():  # read only the excerpt, however large the answer
                head += part
                if len(head) >= EXCERPT * 4:
                    break
        excerpt = head.decode("utf-8", "replace")[:EXCERPT]
        if not 200 <= status < 300:
            error = f"endpoint answered HTTP {status}"
    except DeliveryRefused as exc:
        error, refused = str(exc)[:EXCERPT], True
    except (httpx.HTTPError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:EXCERPT]
    latency_ms = int((time.monotonic() - started) * 1000)
    with db.transaction() as s:
        s.add(
            WebhookDelivery(
                environment_id=ctx.environment_id,
                endpoint_pk=endpoint_pk,
                job_pk=ctx.pk,
                event_id=event["id"],
                event_type=event["type"],
                customer_ref=customer_of(event),
                attempt=ctx.attempt,
                succeeded=error is None,
                status_code=status,
                latency_ms=latency_ms,
                response_excerpt=excerpt,
                error=error,
            )
        )
    if refused:
        raise DeliveryRefused(error)
    if error is not None:
        raise DeliveryFailed(error)
