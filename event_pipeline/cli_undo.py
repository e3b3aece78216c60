"""`event-pipeline undo`: take a finished upload back (or show what that would do)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from event_pipeline.cli_common import echo_json, engine

if TYPE_CHECKING:
    from event_pipeline.steps.undo import UndoPlan

# Lines shown per list in the text output; --json lists everything.
SHOWN = 50


@click.command("undo")
@click.argument("upload_id")
@click.option("--dry-run", is_flag=True, help="Print exactly what would change, changing nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (ids and counts, no addresses).")
def undo(upload_id: str, dry_run: bool, as_json: bool) -> None:
    """Undo UPLOAD_ID: remove the participants only it created (tokens revoked, unsent mail
    cancelled; mail already sent is listed) and put back the fields it changed, except where a
    later upload set them since. Undoing an undone upload changes nothing and exits 0."""
    from event_pipeline.steps.undo import UndoRefused, undo_upload

    try:
        result = undo_upload(engine(), upload_id, dry_run=dry_run)
    except UndoRefused as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        echo_json(
            {
                **result.plan.as_json(),
                "dry_run": dry_run,
                "applied": result.applied,
                "already_undone": result.already_undone,
                "undone_at": result.undone_at.isoformat() if result.undone_at else None,
            }
        )
        return
    if result.already_undone:
        when = f" at {result.undone_at:%Y-%m-%d %H:%M:%S %Z}" if result.undone_at else ""
        click.echo(f"upload {upload_id} was undone already{when}; nothing to do")
        return
    for line in describe(result.plan, dry_run=dry_run):
        click.echo(line)


def describe(plan: UndoPlan, *, dry_run: bool) -> list[str]:
    """The organiser's account of an undo: every change, addresses masked, long lists cut."""
    from event_pipeline.identity import mask_email

    n = plan.summary()

    # (dry run, real run) wording of each line.
    def said(would: str, did: str) -> str:
        return would if dry_run else did

    head = "dry run, nothing changed: " if dry_run else ""
    lines = [f"{head}undo of upload {plan.upload_id} ({plan.file_name}, event {plan.event_slug})"]
    if not any(n.values()):
        lines.append(f"  {said('it would change', 'it changed')} nothing: none of its rows are left to take back")
    if plan.removed:
        lines.append(
            f"  {said('would remove', 'removed')} {n['participants_removed']} participant(s) only this upload "
            f"added; {n['tokens_revoked']} token(s) {said('would be revoked', 'revoked')}, "
            f"{n['mail_cancelled']} unsent mail(s) {said('would be cancelled', 'cancelled')}:"
        )
        lines += _cut([f"    #{r.participant_id} {mask_email(r.email)}" for r in plan.removed])
    if plan.mail_in_flight:
        lines.append(
            f"  {len(plan.mail_in_flight)} of those mails {said('are', 'were')} being sent at this moment and may "
            "have gone out "
            f"(deliveries {_ids(plan.mail_in_flight)})"
        )
    if plan.mail_sent:
        lines.append(
            f"  mail already sent to these participants ({len(plan.mail_sent)}; their tickets "
            f"{said('would scan', 'now scan')} as revoked):"
        )
        lines += _cut(
            [
                f"    delivery {m.delivery_id} ({m.kind}) to #{m.participant_id} {mask_email(m.email)}"
                for m in plan.mail_sent
            ]
        )
    if plan.restored:
        lines.append(
            f"  {said('would restore', 'restored')} {n['fields_restored']} field(s) of "
            f"{n['participants_restored']} participant(s) to their values before this upload:"
        )
        lines += _cut([f"    #{r.participant_id}: {', '.join(r.fields)}" for r in plan.restored])
    if plan.kept_participants:
        lines.append(
            f"  {said('would keep', 'kept')} {len(plan.kept_participants)} participant(s) this upload added, "
            "because a later upload built on them:"
        )
        lines += _cut(
            [
                f"    #{k.participant_id} kept: the later upload {', '.join(k.later_upload_ids)} also set it"
                for k in plan.kept_participants
            ]
        )
    if plan.kept_fields:
        lines.append(
            f"  {said('would keep', 'kept')} {len(plan.kept_fields)} field(s) this upload changed, "
            "because a later upload set them since:"
        )
        lines += _cut(
            [
                f"    #{k.participant_id} {k.field} kept: the later upload {k.later_upload_id} also set it"
                for k in plan.kept_fields
            ]
        )
    if not dry_run:
        lines.append(f"  upload {plan.upload_id} is now undone (`event-pipeline status {plan.upload_id}`)")
    return lines


def _cut(lines: Sequence[str]) -> list[str]:
    if len(lines) <= SHOWN:
        return list(lines)
    return [*lines[:SHOWN], f"    ... and {len(lines) - SHOWN} more (--json lists them all)"]


def _ids(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:SHOWN])
    return shown + (f", ... {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


COMMANDS: list[click.Command] = [undo]
