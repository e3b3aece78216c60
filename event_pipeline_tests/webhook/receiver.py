"""The webhook receiver on a real uvicorn server on 127.0.0.1 (a free port), in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from sqlalchemy.engine import Engine

from event_pipeline.webhook.app import PATH, create_app
from event_pipeline_tests.support.ports import free_port


@contextmanager
def running_receiver(engine: Engine, public_key: str, **app_kwargs: object) -> Iterator[str]:
    """Serve the receiver until the block ends; yields the URL SendGrid would be given."""
    port = free_port()
    app = create_app(engine, public_key, **app_kwargs)  # type: ignore[arg-type]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="webhook-receiver", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the webhook receiver did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}{PATH}"
    finally:
        server.should_exit = True
        thread.join(10)
