"""Which sender a process uses: chosen by configuration, never guessed from what happens to be set.

A run worker that did not get ``SENDGRID_API_KEY`` must not quietly write mail into a local
folder and call it sent; with ``EVENT_PIPELINE_MAIL_BACKEND=sendgrid`` and no key it gets a
sender that refuses to start (the dispatcher checks before it claims anything).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from event_pipeline.mail.message import OutgoingMessage
from event_pipeline.mail.outbox import MboxOutbox
from event_pipeline.mail.senders import (
    DEFAULT_TIMEOUT_S,
    Sender,
    SenderUnavailableError,
    SendGridSender,
    SendResult,
)

BACKEND_ENV = "EVENT_PIPELINE_MAIL_BACKEND"
BACKENDS = ("outbox", "sendgrid")
DEFAULT_BACKEND = "outbox"


class MailConfigError(ValueError):
    pass


def backend_from_env(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    value = (env.get(BACKEND_ENV) or DEFAULT_BACKEND).strip().lower()
    if value not in BACKENDS:
        raise MailConfigError(f"{BACKEND_ENV} must be one of {', '.join(BACKENDS)}, not {value!r}")
    return value


class UnconfiguredSender:
    """Stands in for a backend that cannot work in this process; ``unavailable`` says why."""

    idempotent = False

    def __init__(self, name: str, unavailable: str) -> None:
        self.name = name
        self.unavailable = unavailable

    def send(self, message: OutgoingMessage) -> SendResult:
        raise SenderUnavailableError(self.unavailable)


def make_sender(
    backend: str,
    *,
    outbox_dir: Path,
    sendgrid_api_key: str | None = None,
    sendgrid_host: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    pool_size: int = 16,
) -> Sender:
    if backend == "outbox":
        return MboxOutbox(outbox_dir)
    if backend == "sendgrid":
        if not sendgrid_api_key:
            return UnconfiguredSender(
                "sendgrid",
                f"{BACKEND_ENV}=sendgrid but SENDGRID_API_KEY is not set in this process "
                "(set it for every process that runs steps, or use the outbox backend)",
            )
        return SendGridSender(sendgrid_api_key, host=sendgrid_host, timeout_s=timeout_s, pool_size=pool_size)
    raise MailConfigError(f"unknown mail backend {backend!r}; use one of {', '.join(BACKENDS)}")
