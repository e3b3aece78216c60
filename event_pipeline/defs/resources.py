"""Resources: one per external system. Secrets arrive through ``dg.EnvVar`` and never show in
run config; connection URLs come from the environment at use time for the same reason."""

import os
import threading
from pathlib import Path

import dagster as dg
from sqlalchemy.engine import Engine

from event_pipeline import settings
from event_pipeline.access.tokens import DEFAULT_CHECKIN_BASE_URL, TokenCodec
from event_pipeline.mail.senders import OutboxSender, Sender, SendGridSender
from event_pipeline.store.db import make_engine
from event_pipeline.store.migrate import upgrade

_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def migrated_engine(url: str) -> Engine:
    """Engine with the schema at head; migrations run once per process and URL."""
    engine = make_engine(url)
    with _migrate_lock:
        if url not in _migrated:
            upgrade(engine)
            _migrated.add(url)
    return engine


class DatabaseResource(dg.ConfigurableResource):
    """Participants database. Unset ``url`` means DATABASE_URL, else the embedded SQLite file
    (a URL may hold a password, so it is not put into config by default)."""

    url: str | None = None

    def engine(self) -> Engine:
        return migrated_engine(self.url or settings.database_url())


class StorageResource(dg.ConfigurableResource):
    """The var dir: inbox, upload store, outbox, reports."""

    home: str | None = None
    max_upload_bytes: int = 50 * 1024 * 1024
    default_phone_region: str = "KR"

    def paths(self) -> settings.Paths:
        return settings.paths(self.home)


class AccessTokensResource(dg.ConfigurableResource):
    signing_key: str
    checkin_base_url: str = DEFAULT_CHECKIN_BASE_URL

    def codec(self) -> TokenCodec:
        return TokenCodec.from_secret(self.signing_key)


class MailerResource(dg.ConfigurableResource):
    """SendGrid when an API key is configured, else the outbox folder."""

    sendgrid_api_key: str | None = None
    sendgrid_host: str | None = None
    from_email: str = "no-reply@event-pipeline.invalid"
    from_name: str = "Event Pipeline"
    outbox_dir: str | None = None
    timeout_s: float = 15.0
    # Concurrent requests to the provider; SendGrid answers in ~100-300 ms, so this bounds sends/s.
    workers: int = 16

    def sender(self) -> Sender:
        if self.sendgrid_api_key:
            return SendGridSender(self.sendgrid_api_key, host=self.sendgrid_host, timeout_s=self.timeout_s)
        return OutboxSender(Path(self.outbox_dir) if self.outbox_dir else settings.paths().outbox)


def _env_or_none(name: str) -> dg.EnvVar | None:
    return dg.EnvVar(name) if os.environ.get(name) else None


def default_resources() -> dict[str, object]:
    return {
        "db": DatabaseResource(),
        "storage": StorageResource(),
        "tokens": AccessTokensResource(
            signing_key=dg.EnvVar("EVENT_PIPELINE_TOKEN_KEY"),
            checkin_base_url=os.environ.get("CHECKIN_BASE_URL", DEFAULT_CHECKIN_BASE_URL),
        ),
        "mailer": MailerResource(
            sendgrid_api_key=_env_or_none("SENDGRID_API_KEY"),
            sendgrid_host=_env_or_none("SENDGRID_HOST"),
            from_email=os.environ.get("EVENT_PIPELINE_FROM_EMAIL", "no-reply@event-pipeline.invalid"),
            workers=int(os.environ.get("EVENT_PIPELINE_MAIL_WORKERS", "16")),
        ),
    }
