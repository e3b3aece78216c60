"""`event-pipeline`: the command line for people. Each command is a thin call into the parts."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from event_pipeline import settings

DEMO_EVENT = "demo-2026"
SAMPLE_FILE = Path(__file__).with_name("sample") / "participants_demo.csv"
REPO_ROOT = Path(__file__).resolve().parents[1]


def _engine() -> Any:
    from event_pipeline.store.migrate import SchemaNotCurrent, app_engine

    try:
        return app_engine(settings.database_url())
    except SchemaNotCurrent as exc:
        raise click.ClickException(str(exc)) from None


def _migrate() -> str:
    from event_pipeline.store.db import make_engine
    from event_pipeline.store.migrate import current_revision, upgrade

    engine = make_engine(settings.database_url())
    upgrade(engine)
    return current_revision(engine) or "?"


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@click.group()
def main() -> None:
    """Import participants files into events: tokens, QR codes and welcome emails included."""
    os.environ.setdefault("DAGSTER_HOME", str(settings.paths().dagster_home))
    settings.load_secrets_env()


@main.command()
@click.option("--demo", is_flag=True, help=f"Also create the demo event {DEMO_EVENT!r}.")
def init(demo: bool) -> None:
    """Create the var dir, Dagster home, a local token key and the database schema."""
    from event_pipeline.files import private_dir, write_private_text

    paths = settings.paths()
    for folder in [paths.home, *paths.all_dirs(), paths.dagster_home]:
        private_dir(folder)
    instance_yaml = paths.dagster_home / "dagster.yaml"
    template = Path(os.environ.get("EVENT_PIPELINE_DAGSTER_YAML", REPO_ROOT / "dagster.yaml"))
    if not instance_yaml.exists() and template.is_file():
        shutil.copyfile(template, instance_yaml)
    if not paths.secrets_env.exists():
        key = secrets.token_urlsafe(48)
        write_private_text(
            paths.secrets_env,
            "# Local secrets for the embedded default. Production sets these in the environment.\n"
            f"EVENT_PIPELINE_TOKEN_KEY={key}\n",
        )
        os.environ.setdefault("EVENT_PIPELINE_TOKEN_KEY", key)
    revision = _migrate()
    click.echo(f"var dir:      {paths.home}")
    click.echo(f"DAGSTER_HOME: {paths.dagster_home}")
    click.echo(f"database:     {settings.database_url().split('@')[-1]} (schema {revision})")
    if demo:
        from event_pipeline.store.events import create_event

        event = create_event(
            _engine(),
            slug=DEMO_EVENT,
            name="데모 컨퍼런스 2026",
            organiser_email="organiser@example.com",
            starts_at=datetime(2026, 12, 10, 9, 0),
            location="서울 코엑스",
            language="ko",
            exist_ok=True,
        )
        (paths.inbox / event.slug).mkdir(parents=True, exist_ok=True)
        click.echo(f"demo event:   {event.slug} (drop files into {paths.inbox / event.slug})")


@main.command()
def migrate() -> None:
    """Bring the participants database schema up to date (the only place migrations run)."""
    click.echo(f"database {settings.database_url().split('@')[-1]} is at schema revision {_migrate()}")


@main.command("demo-drop")
def demo_drop() -> None:
    """Drop the bundled sample participants file into the demo event's inbox."""
    target_dir = settings.paths().inbox / DEMO_EVENT
    target_dir.mkdir(parents=True, exist_ok=True)
    _place_in_inbox(SAMPLE_FILE, target_dir, strict=False)
    click.echo(f"dropped {SAMPLE_FILE.name} into {target_dir}")


@main.group()
def event() -> None:
    """Create and list events."""


@event.command("add")
@click.argument("slug")
@click.option("--name", required=True)
@click.option("--organiser-email", required=True)
@click.option("--starts-at", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]), default=None)
@click.option("--location", default="")
@click.option("--language", type=click.Choice(["ko", "en"]), default="ko", show_default=True)
def event_add(
    slug: str, name: str, organiser_email: str, starts_at: datetime | None, location: str, language: str
) -> None:
    """Create event SLUG; its inbox folder is var/inbox/SLUG/."""
    from event_pipeline.store.events import EventError, create_event

    try:
        created = create_event(
            _engine(),
            slug=slug,
            name=name,
            organiser_email=organiser_email,
            starts_at=starts_at,
            location=location,
            language=language,
        )
    except EventError as exc:
        raise click.ClickException(str(exc)) from None
    inbox_dir = settings.paths().inbox / created.slug
    inbox_dir.mkdir(parents=True, exist_ok=True)
    click.echo(f"created event {created.slug}; drop participant files into {inbox_dir}")


@event.command("list")
def event_list() -> None:
    from event_pipeline.store.events import list_events

    with _engine().connect() as conn:
        for ev in list_events(conn):
            click.echo(f"{ev.slug}\t{ev.name}\t{ev.starts_at or ''}\t{ev.language}")


def _require_event(slug: str) -> None:
    from event_pipeline.store.events import get_event

    with _engine().connect() as conn:
        if get_event(conn, slug) is None:
            raise click.ClickException(
                f"no event {slug!r}; create it with: event-pipeline event add {slug} --name ... --organiser-email ..."
            )


def _place_in_inbox(source: Path, inbox_dir: Path, *, strict: bool) -> Path:
    """Copy under a temp name the sensor ignores, then rename: the sensor never sees half a file."""
    target = inbox_dir / source.name
    n = 1
    while target.exists():
        target = inbox_dir / f"{source.stem}-{n}{source.suffix}"
        n += 1
    if strict:
        manifest = target.with_name(target.name + ".json")
        manifest.write_text(json.dumps({"strict": True}), encoding="utf-8")
    tmp = inbox_dir / f".{target.name}.part"
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--event", "event_slug", required=True)
@click.option("--strict", is_flag=True, help="All or nothing: any invalid row rejects the whole file.")
def upload(path: Path, event_slug: str, strict: bool) -> None:
    """Check PATH at once, then place it in the event's inbox for the sensor."""
    from event_pipeline.intake import IntakeError, read_table
    from event_pipeline.steps.inbox import sha256_file
    from event_pipeline.store.uploads import upload_id_for

    _require_event(event_slug)
    try:
        parsed = read_table(path)
    except IntakeError as exc:
        raise click.ClickException(f"{path.name}: {exc}") from None
    inbox_dir = settings.paths().inbox / event_slug
    inbox_dir.mkdir(parents=True, exist_ok=True)
    placed = _place_in_inbox(path, inbox_dir, strict=strict)
    click.echo(f"queued {placed.name}: {parsed.rows} rows ({parsed.format})")
    click.echo(upload_id_for(event_slug, sha256_file(path)))


def _upload_summary(upload_id: str) -> dict[str, Any]:
    from event_pipeline.store import deliveries, uploads

    with _engine().connect() as conn:
        up = uploads.get_upload(conn, upload_id)
        if up is None:
            raise click.ClickException(f"no upload {upload_id!r}")
        mail = deliveries.status_counts(conn, upload_id=upload_id)
    return {
        "upload_id": up.id,
        "status": up.status,
        "reason": up.reason,
        "file": up.original_name,
        "format": up.format,
        "encoding": up.encoding,
        "rows_in_file": up.rows_in_file,
        "loaded_new": up.loaded_new,
        "updated": up.updated,
        "unchanged": up.unchanged,
        "duplicates_in_file": up.duplicates_in_file,
        "rejected": up.rejected_rows,
        "empty_rows": up.empty_rows,
        "error_report": up.error_report_path,
        "emails": mail,
        "created_at": up.created_at,
        "finished_at": up.finished_at,
    }


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Judge as a strict upload: any invalid row rejects the file.")
@click.option("--sheet", default=None, help="Excel sheet to read (default: the first non-empty one).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--max-errors", default=1000, show_default=True, help="Errors listed at most.")
def check(path: Path, strict: bool, sheet: str | None, as_json: bool, max_errors: int) -> None:
    """Dry run: read and validate PATH as an import would, writing nothing. Exit 0 accepted, 2 rejected."""
    from event_pipeline.intake import IntakeError, read_table
    from event_pipeline.steps.rows import judge

    report: dict[str, Any] = {
        "status": "rejected",
        "reason": None,
        "format": None,
        "encoding": None,
        "header_row": None,
        "columns": {},
        "rows": 0,
        "valid": 0,
        "invalid": 0,
        "duplicates_in_file": 0,
        "empty_rows": 0,
        "errors": [],
    }
    try:
        parsed = read_table(path, sheet=sheet)
    except IntakeError as exc:
        report["reason"] = f"{path.name}: {exc}"
    else:
        verdict = judge(parsed.frame, strict=strict, default_region=settings.default_phone_region())
        errors = verdict.outcome.errors
        report |= {
            "format": parsed.format,
            "encoding": parsed.encoding,
            "header_row": parsed.header_row,
            "columns": parsed.columns,
            "rows": parsed.rows,
            "valid": len(verdict.outcome.valid),
            "invalid": verdict.outcome.invalid_rows,
            "duplicates_in_file": len(verdict.duplicates),
            "empty_rows": parsed.empty_rows,
            "errors": [{"row": e.row, "column": e.column, "message": e.message} for e in errors[:max_errors]],
        }
        if verdict.rejection:
            report["reason"] = verdict.rejection
        else:
            report["status"] = "accepted"
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        _print_check(path, report)
    sys.exit(0 if report["status"] == "accepted" else 2)


def _print_check(path: Path, report: dict[str, Any]) -> None:
    click.echo(f"{path.name}: {report['status'].upper()}" + (f" - {report['reason']}" if report["reason"] else ""))
    if report["format"]:
        click.echo(
            f"  format {report['format']}, encoding {report['encoding'] or '-'}, header on row {report['header_row']}"
        )
        for canonical, header in report["columns"].items():
            click.echo(f"  column {canonical:<10} <- {header}")
        click.echo(
            f"  rows {report['rows']}: valid {report['valid']}, invalid {report['invalid']}, "
            f"duplicates in file {report['duplicates_in_file']}, empty rows skipped {report['empty_rows']}"
        )
    if report["errors"]:
        click.echo(f"  {'row':>6}  {'column':<12} message")
        for err in report["errors"]:
            click.echo(f"  {err['row']:>6}  {err['column']:<12} {err['message']}")


@main.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--event", "event_slug", required=True)
@click.option("--strict", is_flag=True, help="All or nothing: any invalid row rejects the whole file.")
@click.option("--force", is_flag=True, help="Run again even if this exact file was imported already.")
@click.option("--json", "as_json", is_flag=True)
def import_(path: Path, event_slug: str, strict: bool, force: bool, as_json: bool) -> None:
    """Run the import job for PATH in this process (same job, same instance as the daemon's)."""
    import dagster as dg

    from event_pipeline.defs import defs
    from event_pipeline.defs.partitions import UPLOADS
    from event_pipeline.defs.resources import mail_context_from_env
    from event_pipeline.inbox.manifest import ManifestError
    from event_pipeline.steps.imports import fail
    from event_pipeline.steps.inbox import UnknownEventError, register_local_file

    started = time.perf_counter()
    try:
        up, _ = register_local_file(
            _engine(), settings.paths(), event_slug=event_slug, source=path, strict=strict or None
        )
    except (UnknownEventError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from None
    ran = False
    if force or up.status not in ("done", "rejected"):
        instance = dg.DagsterInstance.get()
        if not instance.has_dynamic_partition(UPLOADS, up.id):
            instance.add_dynamic_partitions(UPLOADS, [up.id])
        job = defs.resolve_job_def("import_upload")
        result = job.execute_in_process(instance=instance, partition_key=up.id, raise_on_error=False)
        ran = True
        if not result.success:
            reason = "the import run failed; see `event-pipeline status` for the step"
            fail(_engine(), settings.paths(), mail_context_from_env(), up.id, reason=reason)
    summary = _upload_summary(up.id) | {"ran": ran, "seconds": round(time.perf_counter() - started, 3)}
    if as_json:
        _echo_json(summary)
    else:
        for key, value in summary.items():
            click.echo(f"{key:>20}: {value}")
    if summary["status"] != "done":
        sys.exit(2)


@main.command()
@click.argument("upload_id", required=False)
@click.option("--json", "as_json", is_flag=True)
def status(upload_id: str | None, as_json: bool) -> None:
    """Recent uploads, or one upload: state, steps done, counts, errors, attempts."""
    from event_pipeline.store.uploads import list_uploads

    if upload_id is None:
        with _engine().connect() as conn:
            rows = list_uploads(conn)
        data = [
            {
                "upload_id": u.id,
                "status": u.status,
                "rows": u.rows_in_file,
                "new": u.loaded_new,
                "rejected": u.rejected_rows,
                "file": u.original_name,
                "created_at": u.created_at,
            }
            for u in rows
        ]
        if as_json:
            _echo_json(data)
            return
        for d in data:
            click.echo(
                f"{d['upload_id']:<40} {d['status']:<9} rows={d['rows']} new={d['new']} rejected={d['rejected']}"
            )
        return
    summary = _upload_summary(upload_id) | _dagster_progress(upload_id)
    if as_json:
        _echo_json(summary)
        return
    for key, value in summary.items():
        click.echo(f"{key:>20}: {value}")


def _dagster_progress(upload_id: str) -> dict[str, Any]:
    """Which assets of this upload are materialized, and the runs tried (from the Dagster instance)."""
    import dagster as dg

    from event_pipeline.defs.assets import upload_assets

    try:
        instance = dg.DagsterInstance.get()
    except Exception as exc:  # no instance configured: still show what the database knows
        return {"dagster": f"unavailable ({type(exc).__name__})"}
    done = []
    for asset in upload_assets:
        key = asset.key
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[upload_id]), limit=1
        ).records
        if records:
            done.append(key.to_user_string())
    runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": upload_id}))
    return {
        "assets_done": done,
        "attempts": len(runs),
        "runs": [{"run_id": r.dagster_run.run_id, "status": r.dagster_run.status.value} for r in runs],
    }


# -- access tokens: verify, check in, reissue, offline signing key ------------------------------------


def _scan_text(token_or_url: str) -> str:
    """'-' reads the scan from stdin, so a token need not sit in the process list or shell history."""
    if token_or_url == "-":  # noqa: S105 - the stdin marker, not a password
        return sys.stdin.readline().strip()
    return token_or_url


def _scan_keys() -> Any:
    from event_pipeline.access.checkin import ScanKeys
    from event_pipeline.access.signed import SigningKeyError
    from event_pipeline.access.tokens import TokenKeyError

    try:
        return ScanKeys.from_env()
    except (TokenKeyError, SigningKeyError) as exc:
        raise click.ClickException(str(exc)) from None


def _signer(*, required: bool) -> Any:
    from event_pipeline.access.signed import SIGNING_KEY_ENV, SigningKeyError, TokenSigner

    try:
        signer = TokenSigner.from_env()
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from None
    if signer is None and required:
        raise click.ClickException(
            f"{SIGNING_KEY_ENV} is not set; create a key with `event-pipeline gen-signing-key --write`"
        )
    return signer


def _finish_verdict(verdict: Any, as_json: bool) -> None:
    """Print a scan verdict (never the token) and exit 0 for valid, 1 for anything else."""
    if as_json:
        click.echo(json.dumps(verdict.as_json(), ensure_ascii=False))
    else:
        click.echo(f"{verdict.result.value.upper()}: {verdict.message}")
        facts = [
            f"participant {verdict.participant_id}" if verdict.participant_id is not None else "",
            f"event {verdict.event}" if verdict.event else "",
            f"checked in at {verdict.checked_in_at.isoformat()}" if verdict.checked_in_at else "",
        ]
        if any(facts):
            click.echo("  " + ", ".join(f for f in facts if f))
    sys.exit(0 if verdict.ok else 1)


@main.command("verify-token")
@click.argument("token_or_url")
@click.option("--event", "event_slug", default=None, help="The event at whose door this is scanned.")
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Check a signed token offline against this public key file alone (no database, no secrets).",
)
@click.option("--json", "as_json", is_flag=True)
def verify_token(token_or_url: str, event_slug: str | None, public_key: Path | None, as_json: bool) -> None:
    """Say what a check-in of TOKEN_OR_URL would report, recording nothing. Exit 0 if valid, else 1.

    TOKEN_OR_URL is what the scanner read (token or check-in URL), or '-' to read it from stdin.
    """
    from event_pipeline.access.checkin import UnknownEventError, verify_offline, verify_scan
    from event_pipeline.access.signed import SigningKeyError, TokenVerifier

    scanned = _scan_text(token_or_url)
    if public_key is not None:
        try:
            verifier = TokenVerifier.from_text(public_key.read_text(encoding="utf-8"))
        except SigningKeyError as exc:
            raise click.ClickException(f"{public_key}: {exc}") from None
        _finish_verdict(verify_offline(scanned, verifier, event_slug=event_slug), as_json)
        return
    try:
        verdict = verify_scan(_engine(), scanned, _scan_keys(), event_slug=event_slug)
    except UnknownEventError as exc:
        raise click.ClickException(str(exc)) from None
    _finish_verdict(verdict, as_json)


@main.command("checkin")
@click.argument("token_or_url")
@click.option("--event", "event_slug", required=True, help="The event at whose door this is scanned.")
@click.option("--json", "as_json", is_flag=True)
def checkin(token_or_url: str, event_slug: str, as_json: bool) -> None:
    """Check in TOKEN_OR_URL at EVENT's door; every attempt is recorded. Exit 0 if valid, else 1.

    Results: valid, unknown, revoked, wrong_event, already_checked_in, participant_inactive.
    TOKEN_OR_URL may be '-' to read the scan from stdin.
    """
    from event_pipeline.access.checkin import UnknownEventError, check_in

    try:
        verdict = check_in(_engine(), _scan_text(token_or_url), _scan_keys(), event_slug=event_slug)
    except UnknownEventError as exc:
        raise click.ClickException(str(exc)) from None
    _finish_verdict(verdict, as_json)


@main.command("reissue-token")
@click.argument("participant_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def reissue_token(participant_id: int, as_json: bool) -> None:
    """Revoke PARTICIPANT_ID's token and issue a new one with a new QR code.

    The old code then scans as 'revoked'. The new check-in URL is printed here for you to pass on;
    it is not written to any log.
    """
    from event_pipeline.access.checkin import reissue
    from event_pipeline.access.tokens import checkin_base_url_from_env
    from event_pipeline.steps.tickets import qr_dir
    from event_pipeline.store.tokens import UnknownParticipantError

    paths = settings.paths()
    try:
        outcome = reissue(
            _engine(),
            _scan_keys().codec,
            participant_id,
            qr_folder=lambda slug: qr_dir(paths, slug),
            base_url=checkin_base_url_from_env(),
            signer=_signer(required=False),
        )
    except UnknownParticipantError as exc:
        raise click.ClickException(str(exc)) from None
    data = {
        "participant_id": outcome.participant_id,
        "event": outcome.event,
        "revoked_previous": outcome.revoked_previous,
        "qr_path": str(outcome.qr_path),
        "checkin_url": outcome.checkin_url,
        "signed_token": outcome.signed_token,
    }
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    for key, value in data.items():
        if value is not None:
            click.echo(f"{key:>16}: {value}")


@main.command("gen-signing-key")
@click.option("--write", is_flag=True, help="Append the key to the var dir's secrets.env instead of printing it.")
def gen_signing_key(write: bool) -> None:
    """Create an Ed25519 key for offline-verifiable tokens (EVENT_PIPELINE_SIGNING_KEY).

    Without --write, stdout is the line to put into the environment; the public key goes to stderr.
    With --write, the key goes into secrets.env (mode 0600) and stdout is the public key PEM.
    """
    from event_pipeline.access.signed import SIGNING_KEY_ENV, TokenSigner

    signer = TokenSigner.generate()
    line = f"{SIGNING_KEY_ENV}={signer.private_key_b64()}"
    if not write:
        click.echo(line)
        click.echo("Keep it secret. Public key for check-in devices:", err=True)
        click.echo(signer.verifier.public_key_pem().rstrip("\n"), err=True)
        return
    env_file = settings.paths().secrets_env
    existing = env_file.read_text(encoding="utf-8") if env_file.is_file() else ""
    if any(entry.strip().startswith(f"{SIGNING_KEY_ENV}=") for entry in existing.splitlines()):
        raise click.ClickException(
            f"{env_file} already sets {SIGNING_KEY_ENV}; replacing it would invalidate every signed token"
        )
    env_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(env_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(("\n" if existing and not existing.endswith("\n") else "") + line + "\n")
    click.echo(f"wrote {SIGNING_KEY_ENV} to {env_file}", err=True)
    click.echo(signer.verifier.public_key_pem().rstrip("\n"))


@main.command("export-public-key")
@click.option("--format", "fmt", type=click.Choice(["pem", "base64"]), default="pem", show_default=True)
def export_public_key(fmt: str) -> None:
    """Print the public key check-in devices use to verify signed tokens offline."""
    verifier = _signer(required=True).verifier
    click.echo(verifier.public_key_pem().rstrip("\n") if fmt == "pem" else verifier.public_key_b64())


if __name__ == "__main__":  # pragma: no cover
    main()
