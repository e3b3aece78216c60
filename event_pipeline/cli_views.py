"""How the command line shows things to people: tables, stage progress, one participant.

Every view takes the same plain data the command prints with ``--json``, so the text and the JSON
cannot tell different stories. Values from files and the database go in as ``Text``, never as
markup: a file named ``[bold]x.csv`` is shown as it is.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

# Wide enough that an upload id and a file name share a line when output goes to a file or pipe.
_PIPE_WIDTH = 160

MARKS = {"pending": "·", "running": "…", "done": "✓", "failed": "✗", "skipped": "-"}
STATE_STYLE = {"waiting": "yellow", "active": "cyan", "completed": "green", "failed": "red", "undone": "magenta"}
COUNT_LABELS = {
    "rows_in_file": "rows in file",
    "loaded_new": "new",
    "updated": "updated",
    "unchanged": "unchanged",
    "duplicates_in_file": "duplicates in file",
    "rejected": "rejected",
    "empty_rows": "empty rows skipped",
}


def console(*, stderr: bool = False) -> Console:
    out = Console(stderr=stderr, highlight=False)
    return out if out.is_terminal else Console(stderr=stderr, highlight=False, width=_PIPE_WIDTH)


def when(value: str | datetime | None) -> str:
    """A timestamp as people read it: to the second, with its zone; '-' when there is none."""
    if value is None:
        return "-"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def mail_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"


# -- progress of one import ---------------------------------------------------------------------


class StageProgress:
    """One bar per stage of the import, ticked as Dagster records each stage's materialization."""

    def __init__(self, progress: Progress, tasks: dict[str, TaskID]) -> None:
        self._progress = progress
        self._tasks = tasks

    def show(self, states: Mapping[str, str], note: str = "") -> None:
        for stage, state in states.items():
            task = self._tasks.get(stage)
            if task is None:
                continue
            started = state != "pending"
            if started and not self._progress.tasks[task].started:
                self._progress.start_task(task)
            finished = state in ("done", "failed", "skipped")
            self._progress.update(task, completed=1 if finished else 0, mark=MARKS.get(state, "?"), state=state)
            if finished and not self._progress.tasks[task].finished_time:
                self._progress.stop_task(task)
        if note:
            self._progress.console.print(Text(note))


@contextmanager
def stage_progress(stages: Sequence[str], out: Console) -> Iterator[StageProgress]:
    progress = Progress(
        TextColumn("{task.fields[mark]}"),
        TextColumn("{task.description:<16}"),
        BarColumn(bar_width=24),
        TextColumn("{task.fields[state]:<8}"),
        TimeElapsedColumn(),
        console=out,
    )
    with progress:
        tasks = {s: progress.add_task(s, total=1, start=False, mark=MARKS["pending"], state="pending") for s in stages}
        yield StageProgress(progress, tasks)


# -- status -----------------------------------------------------------------------------------------


def print_overview(out: Console, overview: Mapping[str, Any]) -> None:
    """``status`` without an id: how many uploads are where, the recent ones, recent set-asides."""
    counts = overview["counts"]
    line = Text("uploads: ")
    shown = ("waiting", "active", "completed", "failed", *(("undone",) if counts.get("undone") else ()))
    for i, state in enumerate(shown):
        line.append(", " if i else "")
        line.append(f"{counts[state]} {state}", style=STATE_STYLE[state] if counts[state] else None)
    out.print(line)
    uploads = overview["uploads"]
    if uploads:
        table = Table(title="recent uploads", title_justify="left", box=None, pad_edge=False)
        for column in ("registered", "upload", "file", "state", "rows", "new", "rejected"):
            table.add_column(column, justify="right" if column in ("rows", "new", "rejected") else "left")
        for u in uploads:
            table.add_row(
                when(u["created_at"]),
                Text(u["upload_id"]),
                Text(u["file"]),
                Text(u["state"], style=STATE_STYLE.get(u["state"], "")),
                _number(u["rows"]),
                _number(u["new"]),
                _number(u["rejected"]),
            )
        out.print(table)
    drops = overview["set_aside"]
    if drops:
        table = Table(title="set aside without an import", title_justify="left", box=None, pad_edge=False)
        for column in ("when", "event", "file", "reason"):
            table.add_column(column, overflow="fold")
        for d in drops:
            table.add_row(when(d["at"]), Text(d["event"] or "-"), Text(d["file"]), Text(d["reason"]))
        out.print(table)
    _print_bounces(out, overview.get("bounces") or {})
    if not uploads and not drops:
        out.print("nothing uploaded yet")


def _print_bounces(out: Console, bounces: Mapping[str, Mapping[str, int]]) -> None:
    """Per event, the addresses mail could not reach (the organiser's digest reports them hourly)."""
    if not bounces:
        return
    table = Table(title="undeliverable mail", title_justify="left", box=None, pad_edge=False)
    for column in ("event", "addresses", "mails", "not yet in a digest"):
        table.add_column(column, justify="left" if column == "event" else "right")
    for slug, b in bounces.items():
        table.add_row(Text(slug), str(b["participants"]), str(b["deliveries"]), str(b["unreported"]))
    out.print(table)


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)


FINDINGS_SHOWN = 20


def print_upload(out: Console, detail: Mapping[str, Any]) -> None:
    """One upload: state, stages, counts, mail, errors, attempts, timestamps."""
    head = Text()
    head.append(detail["upload_id"], style="bold")
    head.append(f"  {detail['file']}  ")
    head.append(detail["state"].upper(), style=STATE_STYLE.get(detail["state"]))
    if detail["state"] == "failed":  # rejected (the file's fault) or failed (ours): worth telling apart
        head.append(f" ({detail['status']})")
    out.print(head)
    facts = [f"event {detail['event']}", f"format {detail['format'] or '-'}", f"encoding {detail['encoding'] or '-'}"]
    if detail["strict"]:
        facts.append("strict")
    out.print(Text("  " + ", ".join(facts)))

    if all(stage["state"] == "done" for stage in detail["stages"]):
        out.print(Text(f"stages: all {len(detail['stages'])} done"))
    else:
        stages = Table(box=None, pad_edge=False, show_header=False)
        for column in ("mark", "stage", "state"):
            stages.add_column(column)
        for stage in detail["stages"]:  # a failed stage's error is among the errors below
            stages.add_row(MARKS.get(stage["state"], "?"), Text(stage["asset"]), stage["state"])
        out.print(Text("stages:"))
        out.print(stages)

    counts = detail["counts"]
    known = {k: v for k, v in counts.items() if v is not None}
    out.print(
        Text("counts: " + (", ".join(f"{COUNT_LABELS[k]} {v}" for k, v in known.items()) if known else "not yet"))
    )
    emails = detail["emails"]
    out.print(Text(f"welcome emails: {mail_counts(emails['welcome'])}; organiser: {mail_counts(emails['organiser'])}"))
    for error in detail["errors"]:
        out.print(Text(f"error: {error}", style="red"))
    findings = detail.get("findings") or []
    if findings:
        table = Table(title=f"findings ({len(findings)})", title_justify="left", box=None, pad_edge=False)
        for column in ("row", "column", "severity", "reason"):
            table.add_column(column, overflow="fold")
        for finding in findings[:FINDINGS_SHOWN]:
            table.add_row(
                str(finding["row"]), str(finding["column"]), str(finding["severity"]), Text(str(finding["reason"]))
            )
        out.print(table)
        if len(findings) > FINDINGS_SHOWN:
            out.print(Text(f"... and {len(findings) - FINDINGS_SHOWN} more in the error report"))
    if detail["error_report"]:
        out.print(Text(f"error report: {detail['error_report']}"))
    runs = detail["runs"]
    out.print(Text(f"attempts: {detail['attempts']}"))
    for run in runs:
        out.print(Text(f"  run {run['run_id']} {run['status']}, started {when(run['started_at'])}"))
    stamps = detail["timestamps"]
    out.print(Text(f"registered {when(stamps['registered_at'])}, finished {when(stamps['finished_at'])}"))
    if stamps.get("undone_at"):
        undo = detail.get("undo") or {}
        done = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in undo.items() if v)
        out.print(Text(f"undone {when(stamps['undone_at'])}: {done or 'nothing left to take back'}", style="magenta"))


# -- people ---------------------------------------------------------------------------------------------


def print_participant(out: Console, card: Mapping[str, Any]) -> None:
    """What door staff and organisers need: who, which ticket state, which mail state."""
    out.print(Text(f"participant {card['participant_id']}: {card['name']} <{card['email']}>", style="bold"))
    ticket = card["token"] or "not issued yet"
    if card["checked_in_at"]:
        ticket += f", checked in {when(card['checked_in_at'])}"
    out.print(Text(f"  event {card['event']}, registration {card['status']}"))
    out.print(Text(f"  token: {ticket}"))
    mail = card["welcome_mail"] or "not queued"
    attempts = card["welcome_attempts"]
    out.print(Text(f"  welcome email: {mail}" + (f" ({attempts} attempts)" if attempts > 1 else "")))
    if card["email_status"] != "ok":
        out.print(Text(f"  address: {card['email_status']}", style="red"))


def who(name: str | None, masked_email: str | None) -> str:
    """'김민수 <k***@example.com>': the person at the door, by name, address masked."""
    if not name:
        return ""
    return f"{name} <{masked_email}>" if masked_email else name
