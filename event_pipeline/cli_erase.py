"""`event-pipeline erase` and `event-pipeline retention`: a person's data out of every place, and
stored copies out after their time."""

from __future__ import annotations

import click

from event_pipeline import settings
from event_pipeline.cli_common import echo_json, engine


@click.command()
@click.option("--email", "address", required=True, help="The person's address (any case).")
@click.option("--event", "event_slug", default=None, help="Only in this event (default: every event).")
@click.option("--dry-run", is_flag=True, help="Say what would be removed, change nothing.")
@click.option("--json", "as_json", is_flag=True)
def erase(address: str, event_slug: str | None, dry_run: bool, as_json: bool) -> None:
    """Remove a person's data (participant rows, stored uploads, reports, outbox) from the event,
    or from every event, keeping counts and an audit line."""
    from event_pipeline.steps import erase as erase_step

    try:
        done = erase_step.erase_address(engine(), settings.paths(), address, event_slug=event_slug, dry_run=dry_run)
    except (erase_step.NothingToErase, erase_step.UnknownEvent, erase_step.ErasureBlocked) as exc:
        # The messages never repeat the address: this output may end up in a log.
        raise click.ClickException(str(exc)) from None
    if as_json:
        echo_json(done.as_dict())
        return
    verb = "would remove" if dry_run else "removed"
    where = f"event {event_slug}" if event_slug else "every event"
    click.echo(f"{'dry run: ' if dry_run else ''}{done.participants} participant row(s) in {where}; {verb}:")
    for key, n in sorted(done.places.items()):
        if n:
            click.echo(f"  {key.replace('_', ' ')}: {n}")
    if done.erasure_id is not None:
        click.echo(f"audit line: erasure {done.erasure_id}")
    if done.database_cleared is False:
        click.echo(
            "warning: another process kept old database pages in the SQLite WAL; "
            "run `event-pipeline erase` again when the pipeline is idle to clear them",
            err=True,
        )


@click.command()
@click.option("--dry-run", is_flag=True, help="Say what would be deleted, delete nothing.")
@click.option("--json", "as_json", is_flag=True)
def retention(dry_run: bool, as_json: bool) -> None:
    """Delete stored upload copies, originals and error reports older than
    EVENT_PIPELINE_RETAIN_UPLOADS_DAYS (default 30) after their import ended."""
    from event_pipeline.steps.retention import apply_retention

    try:
        days = settings.retain_uploads_days()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    done = apply_retention(engine(), settings.paths(), days=days, dry_run=dry_run)
    if as_json:
        echo_json(done.as_dict())
        return
    removed = done.as_dict()["removed"]
    assert isinstance(removed, dict)
    head = "dry run: would delete" if dry_run else "deleted"
    click.echo(
        f"{head} the copies of {len(done.uploads)} upload(s) that ended before {done.cutoff:%Y-%m-%d} "
        f"({days} days): " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in removed.items())
    )


COMMANDS: list[click.Command] = [erase, retention]
