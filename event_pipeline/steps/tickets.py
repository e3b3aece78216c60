"""Check-in QR codes: rendered where they are used, never stored one file per participant.

A welcome mail renders its own code in the process that sends it (``steps.messages``), so no
working token rests on disk and the import writes no small files. What the ``qr_codes`` step
does is make sure the codes *can* be rendered before anyone is mailed: one sample code of the
event is rendered and decoded back, which catches a check-in base URL too long for a QR code
or an encoder that cannot be loaded. Organisers who print badges ask for one ZIP of an
upload's codes (``write_badges``), written on demand, 0600.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import zxingcpp
from PIL import Image
from sqlalchemy.engine import Engine

from event_pipeline.access.qr import render_qr_png, write_qr_zip
from event_pipeline.access.tokens import TokenCodec, checkin_url
from event_pipeline.settings import Paths
from event_pipeline.store import tokens as tokens_store


class TicketError(ValueError):
    """The event's codes cannot be rendered or read back; the message names why (no token)."""


@dataclass(frozen=True)
class TicketCheck:
    live_tokens: int
    # Bytes of the sample code, a proxy for how big each welcome mail's attachment is.
    sample_png_bytes: int


def legacy_qr_dir(paths: Paths, event_slug: str) -> Path:
    """Where earlier versions kept one PNG per participant."""
    return paths.upload_store / "qr" / event_slug


def check_tickets(
    engine: Engine, paths: Paths, codec: TokenCodec, *, event_id: int, event_slug: str, base_url: str
) -> TicketCheck:
    with engine.connect() as conn:
        live = tokens_store.live_public_ids(conn, event_id)
    # Files from before codes were rendered at send time encode working tokens: remove them.
    legacy = legacy_qr_dir(paths, event_slug)
    if legacy.exists():
        shutil.rmtree(legacy)
        tokens_store.forget_qr_paths(engine, event_id)
    if not live:
        return TicketCheck(live_tokens=0, sample_png_bytes=0)
    url = checkin_url(base_url, codec.token_for(live[0][1]))
    try:
        png = render_qr_png(url)
    except ValueError as exc:
        raise TicketError(f"check-in codes cannot be rendered: {exc} (is CHECKIN_BASE_URL too long?)") from None
    decoded = zxingcpp.read_barcode(Image.open(io.BytesIO(png)))
    if decoded is None or decoded.text != url:
        raise TicketError("a rendered check-in code does not read back as its URL")
    return TicketCheck(live_tokens=len(live), sample_png_bytes=len(png))


def write_badges(
    engine: Engine, codec: TokenCodec, target: Path, *, event_id: int, base_url: str, processes: int = 1
) -> int:
    """One ZIP (0600) with ``<participant id>.png`` for every live token of the event."""
    with engine.connect() as conn:
        live = tokens_store.live_public_ids(conn, event_id)
    items = ((f"{pid}.png", checkin_url(base_url, codec.token_for(public_id))) for pid, public_id in live)
    return write_qr_zip(items, target, processes=processes)
