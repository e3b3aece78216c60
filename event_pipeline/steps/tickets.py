"""Access tokens and QR codes for the participants of an event."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from event_pipeline.access.qr import write_qr_pngs
from event_pipeline.access.tokens import TokenCodec, checkin_url
from event_pipeline.settings import Paths
from event_pipeline.store import tokens as tokens_store

QR_CHUNK = 20_000


def qr_dir(paths: Paths, event_slug: str) -> Path:
    return paths.upload_store / "qr" / event_slug


def render_missing_qr_codes(
    engine: Engine, paths: Paths, codec: TokenCodec, *, event_id: int, event_slug: str, base_url: str
) -> int:
    """Render a PNG for every live token without one. File names carry only the public id."""
    with engine.connect() as conn:
        pending = tokens_store.tokens_missing_qr(conn, event_id)
    folder = qr_dir(paths, event_slug)
    rendered = 0
    for start in range(0, len(pending), QR_CHUNK):
        chunk = pending[start : start + QR_CHUNK]
        items = [(checkin_url(base_url, codec.token_for(pid)), folder / f"{pid}.png") for _, pid in chunk]
        rendered += write_qr_pngs(items)
        # Record paths only after the files exist, so a crash re-renders instead of pointing at nothing.
        tokens_store.set_qr_paths(engine, [(tid, str(folder / f"{pid}.png")) for tid, pid in chunk])
    return rendered
