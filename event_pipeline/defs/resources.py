"""Resources: one per external system. Secrets arrive through ``dg.EnvVar`` and never show in
run config; connection URLs come from the environment at use time for the same reason."""

import os
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager
from sqlalchemy.engine import Engine

from event_pipeline import processes, settings
from event_pipeline.access.tokens import DEFAULT_CHECKIN_BASE_URL, TokenCodec, TokenKeyError
from event_pipeline.defs import executors
from event_pipeline.mail.backends import DEFAULT_BACKEND, backend_from_env, make_sender
from event_pipeline.mail.senders import Sender
from event_pipeline.steps.messages import MailContext
from event_pipeline.store.migrate import app_engine


class DatabaseResource(dg.ConfigurableResource):
    """Participants database. Unset ``url`` means DATABASE_URL, else the embedded SQLite file
    (a URL may hold a password, so it is not put into config by default). The schema must be
    current: migrations are applied by ``event-pipeline migrate``, never on first use."""

    url: str | None = None

    def engine(self) -> Engine:
        return app_engine(self.url or settings.database_url())


class StorageResource(dg.ConfigurableResource):
    """The var dir: inbox, received originals, upload store, outbox, reports."""

    home: str | None = None
    max_upload_bytes: int = 50 * 1024 * 1024
    default_phone_region: str = settings.DEFAULT_PHONE_REGION

    def paths(self) -> settings.Paths:
        return settings.paths(self.home)


class AccessTokensResource(dg.ConfigurableResource):
    signing_key: str
    checkin_base_url: str = DEFAULT_CHECKIN_BASE_URL

    def codec(self) -> TokenCodec:
        try:
            return TokenCodec.from_secret(self.signing_key)
        except TokenKeyError as exc:
            # A configuration error: no retry can fix it, so say so at once.
            raise dg.Failure(str(exc), allow_retries=False) from None


class MailerResource(dg.ConfigurableResource):
    """``backend`` is ``outbox`` (the embedded default) or ``sendgrid``; never guessed from
    whether a key happens to be set in this process."""

    backend: str = DEFAULT_BACKEND
    sendgrid_api_key: str | None = None
    sendgrid_host: str | None = None
    from_email: str = "no-reply@event-pipeline.invalid"
    from_name: str = "Event Pipeline"
    outbox_dir: str | None = None
    timeout_s: float = 15.0
    # Concurrent requests to the provider per process; SendGrid answers in ~100-300 ms, so this
    # bounds sends/s (one keep-alive connection each).
    workers: int = 32
    # Processes a big batch of welcome mail is dispatched from: QR and MIME rendering is CPU work.
    processes: int = 1
    # Welcome mails per step of ``welcome_emails`` (each chunk is one step).
    chunk_size: int = settings.DEFAULT_MAIL_CHUNK

    def sender_args(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "outbox_dir": Path(self.outbox_dir) if self.outbox_dir else settings.paths().outbox,
            "sendgrid_api_key": self.sendgrid_api_key,
            "sendgrid_host": self.sendgrid_host,
            "timeout_s": self.timeout_s,
            "pool_size": self.workers,
        }

    def sender(self) -> Sender:
        return make_sender(**self.sender_args())


class StepIOManager(dg.FilesystemIOManager):
    """Only welcome_emails' steps hand each other values (id ranges, counts): pickled in the var
    dir's ``step_io/`` on the shared store, where a step on another machine finds them, never
    under DAGSTER_HOME. The folder is resolved when a run starts, like every other path."""

    def create_io_manager(self, context: dg.InitResourceContext) -> PickledObjectFilesystemIOManager:
        return PickledObjectFilesystemIOManager(base_dir=self.base_dir or str(settings.paths().step_io))


def mail_context(
    mailer: MailerResource,
    tokens: AccessTokensResource,
    run: dg.AssetExecutionContext | dg.OpExecutionContext | None = None,
) -> MailContext:
    """With ``run``, deliveries are claimed as that run, and a claim held by a run that has
    ended (its worker was killed) is taken back at once instead of after the stale limit."""
    ctx = MailContext(
        sender=mailer.sender(),
        from_email=mailer.from_email,
        from_name=mailer.from_name,
        codec=tokens.codec(),
        checkin_base_url=tokens.checkin_base_url,
        workers=mailer.workers,
        sender_args=mailer.sender_args(),
        processes=mailer.processes,
    )
    if run is None:
        return ctx
    return replace(ctx, claimant=run_claimant(run.run_id), holder_alive=partial(run_alive, run.instance))


RUN_CLAIMANT = "run:"


def run_claimant(run_id: str) -> str:
    """The run and the process the step runs in: with the Celery executor a step whose worker
    died is run again in the same run, by another process, which must see the claims as dead."""
    return f"{RUN_CLAIMANT}{run_id}:{processes.claimant()}"


def run_alive(instance: dg.DagsterInstance, holder: str) -> bool | None:
    """A run's claims live as long as the run and, while it goes on, as long as the step's
    process (None, cannot tell, for a process on another host); others by the process table."""
    if not holder.startswith(RUN_CLAIMANT):
        return processes.claimant_alive(holder)
    run_id, _, process = holder.removeprefix(RUN_CLAIMANT).partition(":")
    run = instance.get_run_by_id(run_id)
    if run is None or run.is_finished:
        return False
    return processes.claimant_alive(process) if process else True


def mail_context_from_env() -> MailContext:
    """The same context outside a run (the CLI): the resources' EnvVars resolved here."""
    resources = default_resources()
    mailer, tokens = resources["mailer"], resources["tokens"]
    assert isinstance(mailer, MailerResource) and isinstance(tokens, AccessTokensResource)
    return mail_context(mailer.process_config_and_initialize(), tokens.process_config_and_initialize())


def _env_or_none(name: str) -> dg.EnvVar | None:
    return dg.EnvVar(name) if os.environ.get(name) else None


def default_resources() -> dict[str, object]:
    return {
        "db": DatabaseResource(),
        "storage": StorageResource(default_phone_region=settings.default_phone_region()),
        "tokens": AccessTokensResource(
            signing_key=dg.EnvVar("EVENT_PIPELINE_TOKEN_KEY"),
            checkin_base_url=os.environ.get("CHECKIN_BASE_URL", DEFAULT_CHECKIN_BASE_URL),
        ),
        "mailer": MailerResource(
            backend=backend_from_env(),
            sendgrid_api_key=_env_or_none("SENDGRID_API_KEY"),
            sendgrid_host=_env_or_none("SENDGRID_HOST"),
            from_email=os.environ.get("EVENT_PIPELINE_FROM_EMAIL", "no-reply@event-pipeline.invalid"),
            workers=int(os.environ.get("EVENT_PIPELINE_MAIL_WORKERS", "32")),
            processes=int(os.environ.get("EVENT_PIPELINE_MAIL_PROCESSES", str(os.cpu_count() or 1))),
            chunk_size=settings.mail_chunk_size(distributed=executors.distributed()),
        ),
        "io_manager": StepIOManager(),
    }
