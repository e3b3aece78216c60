"""`event-pipeline`: the command line for people. Each command is a thin call into the parts."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from event_pipeline import settings
from event_pipeline.cli_common import Unusable, echo_json
from event_pipeline.cli_common import engine as open_db

DEMO_EVENT = "demo-2026"
SAMPLE_FILE = Path(__file__).with_name("sample") / "participants_demo.csv"
REPO_ROOT = Path(__file__).resolve().parents[1]


def _migrate() -> str:
    from event_pipeline.store.db import make_engine
    from event_pipeline.store.migrate import current_revision, upgrade

    engine = make_engine(settings.database_url())
    upgrade(engine)
    return current_revision(engine) or "?"


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
            open_db(),
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


class _IsoDateTime(click.ParamType):
    """ISO 8601 as ``identity.parse_datetime`` reads it (seconds, offsets and ``Z`` included)."""

    name = "ISO-8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        from event_pipeline.identity import parse_datetime

        try:
            return parse_datetime(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _checked(rule_name: str) -> Any:
    """A click callback applying the ``identity`` rule ``rule_name``, so a refusal names the parameter
    (create_event applies the same rule again for callers that are not the CLI)."""

    def check(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
        from event_pipeline import identity

        try:
            return str(getattr(identity, rule_name)(value))
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return check


@event.command("add")
@click.argument("slug", callback=_checked("validate_slug"))
@click.option("--name", required=True)
@click.option("--organiser-email", required=True, callback=_checked("validate_organiser_email"))
@click.option(
    "--starts-at",
    type=_IsoDateTime(),
    default=None,
    help="ISO 8601, e.g. 2026-12-01T09:00 or 2026-12-01T09:00:00+09:00; the event's local wall time as written.",
)
@click.option("--location", default="")
@click.option("--language", type=click.Choice(["ko", "en"]), default="ko", show_default=True)
def event_add(
    slug: str, name: str, organiser_email: str, starts_at: datetime | None, location: str, language: str
) -> None:
    """Create event SLUG; its inbox folder is var/inbox/SLUG/."""
    from event_pipeline.store.events import EventError, create_event

    try:
        created = create_event(
            open_db(),
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

    with open_db().connect() as conn:
        for ev in list_events(conn):
            click.echo(f"{ev.slug}\t{ev.name}\t{ev.starts_at or ''}\t{ev.language}")


def _require_event(slug: str) -> None:
    from event_pipeline.store.events import get_event

    with open_db().connect() as conn:
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
@click.option("--wait", is_flag=True, help="Wait until the daemon has imported it, showing each stage.")
@click.option(
    "--timeout", default=600.0, show_default=True, type=click.FloatRange(min=0), help="With --wait: seconds to wait."
)
def upload(path: Path, event_slug: str, strict: bool, wait: bool, timeout: float) -> None:
    """Check PATH at once, then place it in the event's inbox for the sensor. Prints the upload id.

    With --wait, exit 0 once it is imported, 2 if it was rejected or failed, 1 on timeout.
    """
    from event_pipeline.intake import IntakeError, read_table
    from event_pipeline.steps.inbox import sha256_file
    from event_pipeline.store.uploads import get_upload, upload_id_for

    _require_event(event_slug)
    try:
        parsed = read_table(path)
    except IntakeError as exc:
        raise click.ClickException(f"{path.name}: {exc}") from None
    upload_id = upload_id_for(event_slug, sha256_file(path))
    with open_db().connect() as conn:
        existing = get_upload(conn, upload_id)
    inbox_dir = settings.paths().inbox / event_slug
    inbox_dir.mkdir(parents=True, exist_ok=True)
    placed_at = datetime.now(UTC)
    placed = _place_in_inbox(path, inbox_dir, strict=strict)
    click.echo(f"queued {placed.name}: {parsed.rows} rows ({parsed.format})")
    click.echo(upload_id)
    if existing is not None:
        click.echo(
            f"identical to upload {existing.id} ({existing.original_name}, {existing.status}): "
            "the inbox sets it aside, it is not imported again",
            err=True,
        )
    if wait:
        _wait_for_upload(upload_id, event_slug, placed, since=placed_at, timeout=timeout, known=existing is not None)


def _wait_for_upload(
    upload_id: str, event_slug: str, placed: Path, *, since: datetime, timeout: float, known: bool
) -> None:
    """Follow an upload the daemon imports: stage by stage until it ends, is set aside, or time is up."""
    import dagster as dg

    from event_pipeline import cli_views
    from event_pipeline.cli_runs import FINISHED_RUN, STAGES, RunWatcher, upload_runs
    from event_pipeline.inbox.names import safe_name
    from event_pipeline.steps.inbox import recent_drops
    from event_pipeline.store.uploads import TERMINAL_STATUSES, get_upload

    if known:  # identical content: no run will start, so its story is the earlier upload's
        detail = _upload_detail(upload_id)
        cli_views.print_upload(cli_views.console(), detail)
        sys.exit(0 if detail["status"] == "done" else 2)
    instance = dg.DagsterInstance.get()
    watcher = RunWatcher()
    deadline = time.monotonic() + timeout
    out = cli_views.console(stderr=True)
    dropped_as = safe_name(placed.name)
    out.print(f"waiting for the inbox sensor to take {placed.name} (it reads a file once it has settled)")
    with cli_views.stage_progress(STAGES, out) as bar:
        while True:
            with open_db().connect() as conn:
                up = get_upload(conn, upload_id)
            if up is None:
                drop = next(
                    (
                        d
                        for d in recent_drops(settings.paths(), 50)
                        if d.event == event_slug and d.name == dropped_as and d.at >= since.replace(microsecond=0)
                    ),
                    None,
                )
                if drop is not None:
                    raise Unusable(f"{placed.name} was set aside without an import: {drop.reason}")
            else:
                runs = upload_runs(instance, upload_id)
                if runs:
                    watcher.follow(runs[0].run_id)
                    watcher.poll(instance)
                bar.show(watcher.states)
                finished = not runs or dg.DagsterRunStatus(runs[0].status) in FINISHED_RUN
                if up.status in TERMINAL_STATUSES and finished:
                    break
            if time.monotonic() >= deadline:
                state = STATE_OF_STATUS[up.status] if up is not None else "waiting in the inbox"
                click.echo(
                    f"after {timeout:g} s it is still {state}; follow it with `event-pipeline status {upload_id}`",
                    err=True,
                )
                sys.exit(1)
            time.sleep(0.5)
    detail = _upload_detail(upload_id)
    cli_views.print_upload(cli_views.console(), detail)
    sys.exit(0 if detail["status"] == "done" else 2)


# What the job-status view calls an upload's status.
STATE_OF_STATUS = {
    "received": "waiting",
    "running": "active",
    "done": "completed",
    "rejected": "failed",
    "failed": "failed",
    "undone": "undone",
}


def _upload_detail(upload_id: str) -> dict[str, Any]:
    """One upload as `status ID --json` prints it: the database's facts and Dagster's stages and runs."""
    from event_pipeline.steps.rows import upload_findings
    from event_pipeline.steps.undo import parse_summary
    from event_pipeline.store import deliveries, events, uploads

    with open_db().connect() as conn:
        up = uploads.get_upload(conn, upload_id)
        if up is None:
            raise click.ClickException(f"no upload {upload_id!r}; `event-pipeline status` lists the recent ones")
        event_slug = events.get_event_by_id(conn, up.event_id).slug
        every = deliveries.status_counts(conn, upload_id=upload_id)
        welcome = deliveries.status_counts(conn, upload_id=upload_id, kinds=("welcome",))
    organiser = {status: n - welcome.get(status, 0) for status, n in every.items() if n > welcome.get(status, 0)}
    stages, runs, retries, step_errors = _dagster_view(upload_id)
    # A rejection is both the upload's reason and its step's failure: said once.
    said = [f"{where}: {error}" for where, error in step_errors.items() if error != up.reason]
    errors = [e for e in (up.reason, *said, up.mail_note) if e]
    return {
        "upload_id": up.id,
        "event": event_slug,
        "file": up.original_name,
        "state": STATE_OF_STATUS.get(up.status, up.status),
        "status": up.status,
        "reason": up.reason,
        "format": up.format,
        "encoding": up.encoding,
        "strict": up.strict,
        "counts": {
            "rows_in_file": up.rows_in_file,
            "loaded_new": up.loaded_new,
            "updated": up.updated,
            "unchanged": up.unchanged,
            "duplicates_in_file": up.duplicates_in_file,
            "rejected": up.rejected_rows,
            "empty_rows": up.empty_rows,
        },
        "emails": {"welcome": welcome, "organiser": organiser},
        "stages": stages,
        "assets_done": [s["asset"] for s in stages if s["state"] == "done"],
        "errors": errors,
        # The error report's lines (row, column, severity, reason): what the organiser was sent.
        "findings": [f.as_dict() for f in upload_findings(up)],
        "error_report": up.error_report_path,
        "attempts": len(runs),
        "step_retries": retries,
        "runs": runs,
        "timestamps": {
            "registered_at": _iso(up.created_at),
            "finished_at": _iso(up.finished_at),
            "undone_at": _iso(up.undone_at),
        },
        # What `event-pipeline undo` did (counts), once it took this upload back.
        "undo": parse_summary(up.undo_summary),
    }


def _dagster_view(upload_id: str) -> tuple[list[dict[str, object]], list[dict[str, object]], int, dict[str, str]]:
    """(stages, runs, step retries, errors by stage) from the Dagster instance; stages "unknown" without one."""
    import dagster as dg

    from event_pipeline.cli_runs import STAGES, watch_upload

    try:
        instance = dg.DagsterInstance.get()
    except Exception as exc:  # no instance configured: still show what the database knows
        stages: list[dict[str, object]] = [{"asset": s, "state": "unknown", "error": None} for s in STAGES]
        return stages, [], 0, {"dagster": f"instance unavailable ({type(exc).__name__})"}
    watcher, runs = watch_upload(instance, upload_id)
    return watcher.stages(), [r.as_json() for r in runs], watcher.retries, dict(watcher.errors)


def _iso(value: datetime | None) -> str | None:
    from event_pipeline.store.db import as_utc

    return as_utc(value).isoformat() if value is not None else None


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Judge as a strict upload: any invalid row rejects the file.")
@click.option("--sheet", default=None, help="Excel sheet to read (default: the first non-empty one).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--max-errors", default=1000, show_default=True, help="Errors listed at most.")
def check(path: Path, strict: bool, sheet: str | None, as_json: bool, max_errors: int) -> None:
    """Dry run: read and validate PATH as an import would, writing nothing. Exit 0 accepted, 2 rejected."""
    from event_pipeline.intake import IntakeError, read_table
    from event_pipeline.steps.rows import intake_findings, judge

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
        verdict = judge(
            parsed.frame, strict=strict, default_region=settings.default_phone_region(), intake=intake_findings(parsed)
        )
        findings = verdict.findings
        errors = [f for f in findings if f.severity == "error"]
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
            "counts": verdict.counts,
            "findings": [f.as_dict() for f in findings[:max_errors]],
            "errors": [{"row": e.row, "column": e.column, "message": e.reason} for e in errors[:max_errors]],
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
@click.option("--verbose", "-v", is_flag=True, help="Show Dagster's own log lines instead of the stage bars.")
def import_(path: Path, event_slug: str, strict: bool, force: bool, as_json: bool, verbose: bool) -> None:
    """Run the import job for PATH in this process (same job, same instance as the daemon's).

    Exit 0 when imported, 2 when the file was rejected or the run failed.
    """
    import dagster as dg

    from event_pipeline import cli_views
    from event_pipeline.defs.partitions import UPLOADS
    from event_pipeline.defs.resources import mail_context_from_env
    from event_pipeline.defs.sensors import upload_tags
    from event_pipeline.inbox.manifest import ManifestError
    from event_pipeline.steps.imports import fail
    from event_pipeline.steps.inbox import UnknownEventError, register_local_file

    started = time.perf_counter()
    try:
        up, _ = register_local_file(
            open_db(), settings.paths(), event_slug=event_slug, source=path, strict=strict or None
        )
    except (UnknownEventError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from None
    ran = False
    if up.status == "undone":
        raise click.ClickException(
            f"{path.name} is upload {up.id}, which was undone; it is not imported again "
            "(export or save the file anew to import its rows as a new upload)"
        )
    if force or up.status not in ("done", "rejected"):
        instance = dg.DagsterInstance.get()
        if not instance.has_dynamic_partition(UPLOADS, up.id):
            instance.add_dynamic_partitions(UPLOADS, [up.id])
        tags = upload_tags(event_slug, up.original_name)
        ok = _execute_import(instance, up.id, tags=tags, verbose=verbose, show_stages=not (as_json or verbose))
        ran = True
        if not ok:
            reason = f"the import run failed; see `event-pipeline status {up.id}` for the step"
            fail(open_db(), settings.paths(), mail_context_from_env(), up.id, reason=reason)
    summary = _upload_detail(up.id) | {"ran": ran, "seconds": round(time.perf_counter() - started, 3)}
    if as_json:
        echo_json(summary)
    else:
        if not ran:
            click.echo(f"{path.name}: already imported as {up.id}; nothing to run (--force runs it again)")
        cli_views.print_upload(cli_views.console(), summary)
    if summary["status"] != "done":
        sys.exit(2)


def _execute_import(instance: Any, upload_id: str, *, tags: dict[str, str], verbose: bool, show_stages: bool) -> bool:
    """Run ``import_upload`` for one upload here, with a bar per stage fed by the run's own events."""
    import threading
    import uuid

    from event_pipeline import cli_views
    from event_pipeline.cli_runs import STAGES, RunWatcher, quiet_run_config
    from event_pipeline.defs import defs

    job = defs.resolve_job_def("import_upload")
    run_id = str(uuid.uuid4())  # known before the run starts, so its events can be followed

    def run() -> bool:
        result = job.execute_in_process(
            instance=instance,
            partition_key=upload_id,
            raise_on_error=False,
            run_id=run_id,
            tags=tags,
            run_config=quiet_run_config(verbose=verbose),
        )
        return result.success

    if not show_stages:
        return run()
    watcher = RunWatcher()
    watcher.follow(run_id)
    stop = threading.Event()
    with cli_views.stage_progress(STAGES, cli_views.console(stderr=True)) as bar:

        def follow() -> None:
            while not stop.wait(0.2):
                try:
                    if watcher.poll(instance):
                        bar.show(watcher.states)
                except Exception:  # noqa: S112 - a display hiccup (storage busy) must never touch the run
                    continue

        follower = threading.Thread(target=follow, name="stage-progress", daemon=True)
        follower.start()
        try:
            ok = run()
        finally:
            stop.set()
            follower.join()
        watcher.poll(instance)
        bar.show(watcher.states)
    return ok


@main.command()
@click.argument("upload_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for scripts.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="Recent uploads shown.")
def status(upload_id: str | None, as_json: bool, limit: int) -> None:
    """How uploads stand: counts per state, recent uploads and files set aside, or one upload in
    full (state, stages, counts, mail, errors, attempts, timestamps)."""
    from event_pipeline import cli_views

    if upload_id is not None:
        detail = _upload_detail(upload_id)
        if as_json:
            echo_json(detail)
        else:
            cli_views.print_upload(cli_views.console(), detail)
        return
    overview = _overview(limit)
    if as_json:
        echo_json(overview)
    else:
        cli_views.print_overview(cli_views.console(), overview)


def _overview(limit: int) -> dict[str, Any]:
    from event_pipeline.steps.inbox import recent_drops
    from event_pipeline.store.digests import bounce_counts
    from event_pipeline.store.uploads import count_by_status, list_uploads

    engine = open_db()
    with engine.connect() as conn:
        by_status = count_by_status(conn)
        rows = list_uploads(conn, limit=limit)
        bounces = bounce_counts(conn)
    # "undone" appears once some upload was undone (added by the loop below).
    counts = dict.fromkeys(("waiting", "active", "completed", "failed"), 0)
    for status_, n in by_status.items():
        state = STATE_OF_STATUS.get(status_, status_)
        counts[state] = counts.get(state, 0) + n
    return {
        "counts": counts,
        "uploads": [
            {
                "upload_id": u.id,
                "file": u.original_name,
                "state": STATE_OF_STATUS.get(u.status, u.status),
                "status": u.status,
                "rows": u.rows_in_file,
                "new": u.loaded_new,
                "rejected": u.rejected_rows,
                "created_at": _iso(u.created_at),
                "finished_at": _iso(u.finished_at),
                "undone_at": _iso(u.undone_at),
            }
            for u in rows
        ],
        "set_aside": [
            {"file": d.name, "event": d.event, "reason": d.reason, "at": d.at.isoformat()}
            for d in recent_drops(settings.paths(), limit, engine=engine)
        ],
        "bounces": {slug: vars(b) for slug, b in bounces.items()},
    }


@main.group()
def participant() -> None:
    """Find participants."""


@participant.command("find")
@click.argument("email")
@click.option("--event", "event_slug", required=True)
@click.option("--json", "as_json", is_flag=True)
def participant_find(email: str, event_slug: str, as_json: bool) -> None:
    """The participant of EVENT with address EMAIL (any case, spaces around ignored): id (what
    `reissue-token` takes), name, masked address, token status and welcome-mail status."""
    from event_pipeline import cli_views
    from event_pipeline.identity import mask_email, normalise_email
    from event_pipeline.store.events import get_event
    from event_pipeline.store.participant_cards import find_by_email

    with open_db().connect() as conn:
        event = get_event(conn, event_slug)
        if event is None:
            raise click.ClickException(f"no event {event_slug!r}")
        card = find_by_email(conn, event.id, normalise_email(email))
    if card is None:
        raise click.ClickException(f"no participant of {event_slug} has the address {mask_email(email)}")
    data = {
        "participant_id": card.id,
        "event": card.event_slug,
        "name": card.name,
        "email": mask_email(card.email),
        "status": card.status,
        "email_status": card.email_status,
        "token": card.token,
        "checked_in_at": card.checked_in_at.isoformat() if card.checked_in_at else None,
        "welcome_mail": card.welcome_mail,
        "welcome_attempts": card.welcome_attempts,
    }
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        cli_views.print_participant(cli_views.console(), data)


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


def _finish_verdict(verdict: Any, as_json: bool, engine: Any = None) -> None:
    """Print a scan verdict (never the token) and exit 0 for valid, 1 for anything else.

    With ``engine``, the text names the person (address masked): door staff greet people, not ids.
    """
    from event_pipeline.cli_views import who
    from event_pipeline.identity import mask_email
    from event_pipeline.store.participant_cards import card_for

    if as_json:
        click.echo(json.dumps(verdict.as_json(), ensure_ascii=False))
    else:
        click.echo(f"{verdict.result.value.upper()}: {verdict.message}")
        card = None
        if engine is not None and verdict.participant_id is not None:
            with engine.connect() as conn:
                card = card_for(conn, verdict.participant_id)
        facts = [
            who(card.name, mask_email(card.email)) if card is not None else "",
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
    engine = open_db()
    try:
        verdict = verify_scan(engine, scanned, _scan_keys(), event_slug=event_slug)
    except UnknownEventError as exc:
        raise click.ClickException(str(exc)) from None
    _finish_verdict(verdict, as_json, engine)


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

    engine = open_db()
    try:
        verdict = check_in(engine, _scan_text(token_or_url), _scan_keys(), event_slug=event_slug)
    except UnknownEventError as exc:
        raise click.ClickException(str(exc)) from None
    _finish_verdict(verdict, as_json, engine)


@main.command("reissue-token")
@click.argument("participant_id", type=int)
@click.option(
    "--qr-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the new QR code as a PNG here (0600).",
)
@click.option("--no-mail", is_flag=True, help="Do not mail the new ticket to the participant.")
@click.option("--json", "as_json", is_flag=True)
def reissue_token(participant_id: int, qr_out: Path | None, no_mail: bool, as_json: bool) -> None:
    """Revoke PARTICIPANT_ID's token and issue a new one with a new QR code, and mail the new
    ticket to the participant (unless --no-mail).

    The old code then scans as 'revoked'. The new check-in URL is printed here for you to pass on;
    it is not written to any log.
    """
    from event_pipeline.access.tokens import checkin_base_url_from_env
    from event_pipeline.cli_resend import mail_context
    from event_pipeline.steps.resend import reissue_and_mail
    from event_pipeline.store.tokens import UnknownParticipantError

    try:
        reissued = reissue_and_mail(
            open_db(),
            _scan_keys().codec,
            participant_id,
            base_url=checkin_base_url_from_env(),
            ctx=None if no_mail else mail_context(),
            signer=_signer(required=False),
            qr_out=qr_out,
        )
    except UnknownParticipantError as exc:
        raise click.ClickException(str(exc)) from None
    outcome = reissued.outcome
    data = {
        "participant_id": outcome.participant_id,
        "event": outcome.event,
        "revoked_previous": outcome.revoked_previous,
        "qr_path": str(outcome.qr_path) if outcome.qr_path else None,
        "checkin_url": outcome.checkin_url,
        "signed_token": outcome.signed_token,
        "mail": reissued.mail_summary(),
    }
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    for key, value in data.items():
        if value is not None:
            click.echo(f"{key:>16}: {value}")


@main.command()
@click.option("--event", "event_slug", required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--processes", default=os.cpu_count() or 1, show_default=True, help="Processes rendering codes.")
@click.option("--json", "as_json", is_flag=True)
def badges(event_slug: str, output: Path, processes: int, as_json: bool) -> None:
    """Write every live check-in code of the event to one ZIP of PNGs (0600), for printing badges.

    Members are named <participant id>.png. The codes are working tickets: keep the file safe.
    """
    from event_pipeline.access.tokens import checkin_base_url_from_env
    from event_pipeline.steps.tickets import write_badges
    from event_pipeline.store.events import get_event

    engine = open_db()
    with engine.connect() as conn:
        found = get_event(conn, event_slug)
    if found is None:
        raise click.ClickException(f"no event with slug {event_slug!r} (see `event-pipeline event list`)")
    count = write_badges(
        engine, _scan_keys().codec, output, event_id=found.id, base_url=checkin_base_url_from_env(), processes=processes
    )
    if as_json:
        echo_json({"event": event_slug, "codes": count, "path": str(output)})
    else:
        click.echo(f"{count} check-in codes of {event_slug} written to {output} (0600)")


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


def _add_commands() -> None:
    """The corrections loop's commands live in their own modules, one per capability."""
    from event_pipeline import cli_erase, cli_resend, cli_undo, cli_webhook

    for command in [*cli_undo.COMMANDS, *cli_resend.COMMANDS, *cli_erase.COMMANDS, *cli_webhook.COMMANDS]:
        main.add_command(command)


_add_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
