"""The delivery job: one signed POST per attempt, logged; a non-2xx answer raises so the queue retries."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from entitle.db import Database
from entitle.jobs.service import JobContext, register
from entitle.webhooks.models import JOB_DELIVER, WebhookDelivery, WebhookEndpoint

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
EXCERPT = 1000
USER_AGENT = "Entitle-Webhooks/1"


class DeliveryFailed(Exception):
    pass


def _body(event: dict[str, object]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


@register(JOB_DELIVER)
def deliver(db: Database, ctx: JobContext) -> None:
    event = ctx.payload["event"]
    with db.read() as s:
        endpoint = s.get(WebhookEndpoint, ctx.payload["endpoint"])
        if endpoint is None or endpoint.environment_id != ctx.environment_id or not endpoint.enabled:
            return  # deleted or disabled since: nothing to send
        url, secret, endpoint_pk = endpoint.url, endpoint.secret, endpoint.pk
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
    started = time.monotonic()
    try:
        with (
            httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client,
            client.stream("POST", url, content=body.encode(), headers=headers) as response,
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
    except httpx.HTTPError as exc:
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
                attempt=ctx.attempt,
                succeeded=error is None,
                status_code=status,
                latency_ms=latency_ms,
                response_excerpt=excerpt,
                error=error,
            )
        )
    if error is not None:
        raise DeliveryFailed(error)
