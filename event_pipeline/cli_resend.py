"""``event-pipeline resend`` and ``event-pipeline correct``: tickets sent again, addresses fixed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from event_pipeline.cli_common import echo_json, engine


def mail_context() -> Any:
    """The sending context of the environment; a missing token key is a refusal, not a traceback."""
    import dagster as dg

    from event_pipeline.defs.resources import mail_context_from_env

    try:
        return mail_context_from_env()
    except dg.Failure as exc:
        raise click.ClickException(exc.description or str(exc)) from None


def _participant(value: str) -> tuple[int | None, str | None]:
    """``--participant`` takes an id (what `participant find` shows) or an address."""
    text = value.strip()
    return (int(text), None) if text.isdigit() else (None, text)


@click.command()
@click.option("--event", "event_slug", required=True, help="The event's slug.")
@click.option("--participant", "participant", default=None, metavar="EMAIL|ID", help="One participant.")
@click.option("--upload", "upload_id", default=None, help="Every participant of this upload no ticket reached yet.")
@click.option("--bounced", is_flag=True, help="Everyone whose address changed after it bounced.")
@click.option("--dry-run", is_flag=True, help="Say what would be queued; queue and send nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for scripts.")
def resend(
    event_slug: str, participant: str | None, upload_id: str | None, bounced: bool, dry_run: bool, as_json: bool
) -> None:
    """Send the ticket again, as a new message with its own attempts.

    A participant whose ticket mail is still on its way (queued, sending, waiting for a retry), who
    is inactive or was replaced, or whose address bounced and is not corrected yet, is refused with
    the reason. Exit 1 when the one participant asked for is refused.
    """
    from event_pipeline.steps.resend import ResendError
    from event_pipeline.steps.resend import resend as resend_tickets

    if sum((participant is not None, upload_id is not None, bounced)) != 1:
        raise click.UsageError("choose exactly one of --participant, --upload and --bounced")
    participant_id, email = _participant(participant) if participant is not None else (None, None)
    db = engine()
    try:
        result = resend_tickets(
            db,
            None if dry_run else mail_context(),
            event_slug=event_slug,
            participant_id=participant_id,
            email=email,
            upload_id=upload_id,
            bounced=bounced,
            dry_run=dry_run,
        )
    except ResendError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        echo_json(result.as_json())
    else:
        _print_resend(result)
    if participant is not None and result.refused:
        raise SystemExit(1)


def _print_resend(result: Any) -> None:
    verb = "would queue" if result.dry_run else "queued"
    parts = [f"{verb} {len(result.queued)} ticket(s)"]
    if not result.dry_run:
        parts.append(f"{result.sent} sent now")
    if result.already_delivered:
        parts.append(f"{result.already_delivered} already delivered")
    parts.append(f"{len(result.refused)} refused")
    click.echo(f"{result.event}: " + ", ".join(parts))
    for r in result.refused:
        click.echo(f"  refused: {r.reason}")
    if result.mail_paused:
        click.echo(f"  {result.mail_paused}; the tickets go out by themselves once mail works again")


@click.command()
@click.option("--event", "event_slug", required=True, help="The event's slug.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check every row; change and send nothing.")
@click.option("--no-mail", is_flag=True, help="Only correct the addresses; mail them later with `resend --bounced`.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for scripts.")
def correct(event_slug: str, file: Path, dry_run: bool, no_mail: bool, as_json: bool) -> None:
    """Correct addresses from FILE (CSV with the columns old_email,new_email) and send each
    corrected address its ticket once.

    The participant keeps its id and ticket. Rows are refused one by one (unknown old address,
    new address already taken, invalid new address); the others are applied.
    """
    from event_pipeline.steps.corrections import CorrectionFileError
    from event_pipeline.steps.corrections import correct as apply_corrections
    from event_pipeline.steps.resend import ResendError

    db = engine()
    try:
        result = apply_corrections(
            db,
            None if dry_run or no_mail else mail_context(),
            event_slug=event_slug,
            path=file,
            dry_run=dry_run,
            tickets=not no_mail,
        )
    except (ResendError, CorrectionFileError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        echo_json(result.as_json())
        return
    summary = result.as_json()
    verb = "would correct" if dry_run else "corrected"
    click.echo(f"{result.event}: {verb} {summary['corrected']} address(es), {summary['refused']} row(s) refused")
    for r in result.rows:
        if r.outcome == "refused":
            click.echo(f"  row {r.row}: refused: {r.reason}")
        elif r.delivery_id is not None:
            click.echo(
                f"  row {r.row}: participant {r.participant_id} corrected, ticket queued (delivery {r.delivery_id})"
            )
        else:
            click.echo(f"  row {r.row}: participant {r.participant_id} corrected{': ' + r.reason if r.reason else ''}")
    if not dry_run and not no_mail:
        click.echo(f"  {result.sent} ticket(s) sent now")
    if result.mail_paused:
        click.echo(f"  {result.mail_paused}; the tickets go out by themselves once mail works again")


COMMANDS: list[click.Command] = [resend, correct]
