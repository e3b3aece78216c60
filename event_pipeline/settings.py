"""Where things live on disk and which backends are selected, resolved from the environment.

Every path hangs off one var dir (``EVENT_PIPELINE_HOME``, default ``./var``) so a checkout can be
wiped or moved as a whole, and Dagster's own home is always persistent inside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = "var"


@dataclass(frozen=True)
class Paths:
    home: Path

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def upload_store(self) -> Path:
        return self.home / "uploads"

    @property
    def received(self) -> Path:
        """Originals taken out of the inbox, held until their import ends."""
        return self.home / "received"

    @property
    def processed(self) -> Path:
        return self.home / "processed"

    @property
    def rejected(self) -> Path:
        return self.home / "rejected"

    @property
    def outbox(self) -> Path:
        return self.home / "outbox"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def step_io(self) -> Path:
        """What steps hand each other (an upload's mail chunks as id ranges, their counts; never a
        row): on the shared store, so a step on another machine reads what the one before wrote."""
        return self.home / "step_io"

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME") or self.home / "dagster_home")

    @property
    def db_file(self) -> Path:
        return self.home / "event_pipeline.sqlite"

    @property
    def secrets_env(self) -> Path:
        return self.home / "secrets.env"

    def upload_dir(self, upload_id: str) -> Path:
        return self.upload_store / upload_id

    def all_dirs(self) -> list[Path]:
        return [
            self.inbox,
            self.received,
            self.upload_store,
            self.processed,
            self.rejected,
            self.outbox,
            self.reports,
            self.step_io,
        ]


def paths(home: str | os.PathLike[str] | None = None) -> Paths:
    raw = home or os.environ.get("EVENT_PIPELINE_HOME") or DEFAULT_HOME
    return Paths(Path(raw).expanduser().resolve())


def database_url(home: str | os.PathLike[str] | None = None) -> str:
    """DATABASE_URL wins; otherwise the embedded SQLite file in the var dir."""
    return os.environ.get("DATABASE_URL") or f"sqlite:///{paths(home).db_file}"


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of a file like the ``secrets.env`` that ``init`` writes; {} if absent."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name and not name.startswith("#"):
            values[name.strip()] = value.strip()
    return values


def load_secrets_env(home: str | os.PathLike[str] | None = None) -> None:
    """Fill unset variables from the var dir's ``secrets.env`` (written by ``init``).

    Every process that loads the code (CLI, webserver, daemon, a code server or run worker
    started by hand) calls this, so none of them depends on a shell having sourced the file.
    Variables already set win: production sets them in the environment.
    """
    for name, value in read_env_file(paths(home).secrets_env).items():
        os.environ.setdefault(name, value)


DEFAULT_PHONE_REGION = "KR"


def default_phone_region() -> str:
    """Region for phone numbers written without a country code (most of our files are Korean)."""
    return os.environ.get("EVENT_PIPELINE_PHONE_REGION") or DEFAULT_PHONE_REGION


def sendgrid_webhook_public_key() -> str | None:
    """The Event Webhook's verification key (base64 DER, as SendGrid's settings page shows it).
    Set where the receiver runs, and where mail is sent: there it means events are flowing."""
    return os.environ.get("SENDGRID_WEBHOOK_PUBLIC_KEY", "").strip() or None


DEFAULT_RETAIN_UPLOADS_DAYS = 30


def retain_uploads_days() -> int:
    """Days stored upload copies, held originals and error reports are kept after an import ends."""
    raw = os.environ.get("EVENT_PIPELINE_RETAIN_UPLOADS_DAYS", "").strip()
    if not raw:
        return DEFAULT_RETAIN_UPLOADS_DAYS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"EVENT_PIPELINE_RETAIN_UPLOADS_DAYS must be a whole number of days >= 1, not {raw!r}")
    return int(raw)


# Welcome mails per step when steps run on several workers: a big upload's mail spreads over every
# worker, and a worker that dies repeats one chunk, not the upload.
DEFAULT_MAIL_CHUNK = 5000
# With steps run one after another in one process, chunks buy nothing and each one costs a step and
# the start of its dispatch processes (~2 s: 24 s more for a 60k upload in 12 chunks): one chunk.
WHOLE_UPLOAD = 2**62


def mail_chunk_size(*, distributed: bool) -> int:
    raw = os.environ.get("EVENT_PIPELINE_MAIL_CHUNK")
    if raw:
        return max(1, int(raw))
    return DEFAULT_MAIL_CHUNK if distributed else WHOLE_UPLOAD
