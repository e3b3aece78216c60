"""``POST /sendgrid/events``: SendGrid's signed Event Webhook, verified, then applied.

Answers: 200 with counts (duplicates and events about mail that is not ours included: SendGrid
retries anything else for a day), 403 when the signature, key or timestamp is wrong, 400 when
the body is not a JSON list, 413 above ``MAX_BODY_BYTES``. Logs carry counts and refusal
reasons only: the events hold recipients' addresses.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from event_pipeline.steps.delivery_events import apply_events
from event_pipeline.webhook.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, Verifier

log = logging.getLogger(__name__)

PATH = "/sendgrid/events"
# SendGrid posts batches of up to ~1 MB or 1000 events; 5 MB leaves room without letting a
# stranger make us buffer arbitrarily much before the signature check.
MAX_BODY_BYTES = 5 * 1024 * 1024
DRAIN_FACTOR = 4


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or ``_TooLarge`` once it passes ``limit``. The excess is read and dropped (up to
    ``DRAIN_FACTOR`` x ``limit``) so the client gets its 413 instead of a reset connection."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DRAIN_FACTOR * limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_FACTOR * limit:
            break
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise _TooLarge
    return b"".join(chunks)


def _refuse(status: int, reason: str) -> JSONResponse:
    log.warning("webhook request refused (%d): %s", status, reason)
    return JSONResponse({"error": reason}, status_code=status)


def create_app(
    engine: Engine,
    public_key: str,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The receiver over ``engine``; ``public_key`` is SendGrid's verification key (base64 DER).
    A key that cannot be read raises ``BadPublicKey`` here, before anything is served."""
    verifier = Verifier.from_public_key(public_key)

    async def sendgrid_events(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, max_body_bytes)
        except _TooLarge:
            return _refuse(413, f"body larger than {max_body_bytes} bytes")
        except ClientDisconnect:
            return _refuse(400, "client left mid-body")
        refusal = verifier.refusal(
            body, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER), now=clock()
        )
        if refusal is not None:
            return _refuse(403, refusal)
        try:
            batch = json.loads(body)
        except ValueError:
            batch = None
        if not isinstance(batch, list):
            return _refuse(400, "body is not a JSON list of events")
        result = await run_in_threadpool(apply_events, engine, batch)
        return JSONResponse(result.as_dict())

    return Starlette(routes=[Route(PATH, sendgrid_events, methods=["POST"])])
