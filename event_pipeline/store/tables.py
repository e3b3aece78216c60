"""SQLAlchemy Core tables. Constraints, not application code, guard against duplicates."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Timestamp = sa.DateTime(timezone=True)
# The participant fields an upload writes, each with its own ``<field>_seq``.
SEQ_FIELDS = ("name", "phone", "department", "position", "extra")

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("slug", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("starts_at", Timestamp, nullable=True),
    sa.Column("location", sa.String(200), nullable=False, server_default=""),
    sa.Column("organiser_email", sa.String(320), nullable=False),
    sa.Column("language", sa.String(8), nullable=False, server_default="ko"),
    sa.Column("created_at", Timestamp, nullable=False),
)

uploads_seq = sa.Sequence("uploads_seq", metadata=metadata)

uploads = sa.Table(
    "uploads",
    metadata,
    # The Dagster partition key: "<event-slug>-<sha256[:16]>".
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("original_name", sa.String(255), nullable=False),
    sa.Column("inbox_path", sa.Text, nullable=True),
    sa.Column("stored_path", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("strict", sa.Boolean, nullable=False, server_default=sa.false()),
    # received -> running -> done | rejected | failed
    sa.Column("status", sa.String(16), nullable=False, server_default="received"),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("format", sa.String(8), nullable=True),
    sa.Column("encoding", sa.String(32), nullable=True),
    sa.Column("rows_in_file", sa.Integer, nullable=True),
    sa.Column("empty_rows", sa.Integer, nullable=True),
    sa.Column("rejected_rows", sa.Integer, nullable=True),
    sa.Column("duplicates_in_file", sa.Integer, nullable=True),
    sa.Column("loaded_new", sa.Integer, nullable=True),
    sa.Column("updated", sa.Integer, nullable=True),
    sa.Column("unchanged", sa.Integer, nullable=True),
    sa.Column("error_report_path", sa.Text, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    # Registration order (newer upload, larger seq): decides which upload's value a field keeps.
    # PostgreSQL draws it from the ``uploads_seq`` sequence (migration 0002 also makes nextval the
    # server default there); SQLite has no sequences, so register_upload computes MAX(seq)+1 under
    # its write lock. No server_default here: SQLite cannot render nextval in DDL, and the drift
    # check does not compare server defaults (it does compare type, nullability and the unique).
    sa.Column("seq", sa.Integer, uploads_seq, nullable=False, unique=True),
    # Where the organiser's original is now: received/ while held, then processed/ or rejected/.
    sa.Column("original_path", sa.Text, nullable=True),
    # Why mail about this upload is held back, e.g. "mail paused: provider refused the key (HTTP 401)".
    sa.Column("mail_note", sa.Text, nullable=True),
    # Set once `event-pipeline undo` took this upload back (status becomes "undone"); the summary
    # is JSON counts (removed, restored, kept because a later upload built on them).
    sa.Column("undone_at", Timestamp, nullable=True),
    sa.Column("undo_summary", sa.Text, nullable=True),
    # Set when erasure or retention removed (part of) the stored copy, the original or the report:
    # what went and when. The counts above stay as they were.
    sa.Column("copy_note", sa.Text, nullable=True),
    sa.UniqueConstraint("event_id", "sha256"),
)

participants = sa.Table(
    "participants",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
    sa.Column("email_norm", sa.String(320), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("phone", sa.String(40), nullable=False, server_default=""),
    sa.Column("department", sa.String(200), nullable=False, server_default=""),
    sa.Column("position", sa.String(200), nullable=False, server_default=""),
    sa.Column("extra", sa.Text, nullable=False, server_default="{}"),
    # active | inactive (inactive participants are refused at check-in)
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    # ok | bounced | blocked | invalid
    sa.Column("email_status", sa.String(16), nullable=False, server_default="ok"),
    sa.Column("created_upload_id", sa.String(100), nullable=True),
    sa.Column("updated_upload_id", sa.String(100), nullable=True),
    # Per field, the seq of the upload that last wrote it: an older upload loaded later (a re-run,
    # a slow run) never overwrites what a newer one set. 0: no upload known (rows from before 0002).
    *(sa.Column(f"{field}_seq", sa.Integer, nullable=False, server_default="0") for field in SEQ_FIELDS),
    # When mail to the address bounced (or was blocked/dropped) and when the address last changed:
    # `resend --bounced` picks the participants whose address changed after it bounced.
    sa.Column("bounced_at", Timestamp, nullable=True),
    sa.Column("email_changed_at", Timestamp, nullable=True),
    # The participant that took this one's place (a corrected address of the same person).
    sa.Column("replaced_by", sa.Integer, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("event_id", "email_norm"),
)

access_tokens = sa.Table(
    "access_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), nullable=False),
    # Public half of the token; the secret half is an HMAC of it and is never stored.
    sa.Column("public_id", sa.String(32), nullable=False, unique=True),
    # live | revoked
    sa.Column("status", sa.String(16), nullable=False, server_default="live"),
    sa.Column("qr_path", sa.Text, nullable=True),
    sa.Column("issued_at", Timestamp, nullable=False),
    sa.Column("revoked_at", Timestamp, nullable=True),
    sa.Column("checked_in_at", Timestamp, nullable=True),
    sa.Index(
        "uq_access_tokens_live_participant",
        "participant_id",
        unique=True,
        sqlite_where=sa.text("status = 'live'"),
        postgresql_where=sa.text("status = 'live'"),
    ),
)

checkin_scans = sa.Table(
    "checkin_scans",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=True),
    sa.Column("token_public_id", sa.String(32), nullable=True),
    sa.Column("participant_id", sa.Integer, nullable=True),
    sa.Column("result", sa.String(32), nullable=False),
    sa.Column("scanned_at", Timestamp, nullable=False),
)

email_deliveries = sa.Table(
    "email_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
    # NULL for mail to the organiser.
    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), nullable=True),
    sa.Column("upload_id", sa.String(100), nullable=True),
    # welcome | import_complete | import_failed
    sa.Column("kind", sa.String(32), nullable=False),
    # One logical message, one row: "welcome:<participant>", "import_complete:<upload>", ...
    sa.Column("dedupe_key", sa.String(200), nullable=False, unique=True),
    # queued -> sending -> sent | awaiting_retry | failed | bounced | dropped
    sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Timestamp, nullable=True),
    sa.Column("claimed_at", Timestamp, nullable=True),
    # Who holds the claim ("run:<dagster run id>", "proc:<host>:<pid>:<start>"): a claim whose
    # holder is known to be dead is released at once instead of after the stale-claim limit.
    sa.Column("claimed_by", sa.String(160), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("provider_message_id", sa.String(128), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("sent_at", Timestamp, nullable=True),
    # SendGrid's signed `processed` event for this delivery arrived: the provider has it, so a
    # claim left in `sending` by a crash is finished, not sent again.
    sa.Column("accepted_at", Timestamp, nullable=True),
    # The organiser's bounce digest that reported this delivery (its dedupe key).
    sa.Column("reported_in", sa.String(200), nullable=True),
    # dedupe_key alone keeps one row per logical message: a resend is a new row
    # ("resend:<participant>:<n>"), so (participant_id, kind) is not unique any more.
    sa.Index("ix_email_deliveries_participant", "participant_id", "kind"),
    sa.Index("ix_email_deliveries_due", "status", "next_attempt_at"),
)

# The inbox sensor's memory between ticks: a file is received once it has looked the same
# (fingerprint: size, mtime, ...) for the quiet period. Kept here, not in the sensor cursor, so
# every process watching the inbox agrees.
inbox_sightings = sa.Table(
    "inbox_sightings",
    metadata,
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("fingerprint", sa.String(200), nullable=False),
    sa.Column("first_seen", sa.Float, nullable=False),  # unix seconds
    sa.Column("sightings", sa.Integer, nullable=False),
)

# A mail backend that refused our key: nothing is sent through it until probe_after.
mail_pauses = sa.Table(
    "mail_pauses",
    metadata,
    sa.Column("backend", sa.String(32), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("paused_at", Timestamp, nullable=False),
    sa.Column("probe_after", Timestamp, nullable=False),
)

# How many bytes of each outbox mailbox file belong to deliveries recorded as sent. Written in
# the transaction that records those outcomes, so after a crash anything beyond it is the tail
# of messages whose deliveries are still `sending`: it is cut off, and they are sent again.
outbox_files = sa.Table(
    "outbox_files",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("committed_bytes", sa.BigInteger, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

# What an upload changed in participants it did not create: the fields and their seqs as they were
# before it wrote them. `undo` puts them back; participants the upload created are found by
# participants.created_upload_id and need no row here. One row per upload and participant: a
# re-run of the same upload keeps the first before-image.
participant_changes = sa.Table(
    "participant_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("upload_id", sa.String(100), nullable=False),
    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), nullable=False),
    # JSON object: {"<field>": [value, seq, changed], ...} for every field in SEQ_FIELDS (changed:
    # 1 when the load then changed the field's value; see store/changes.py).
    sa.Column("before", sa.Text, nullable=False),
    sa.Column("recorded_at", Timestamp, nullable=False),
    sa.UniqueConstraint("upload_id", "participant_id"),
    sa.Index("ix_participant_changes_participant", "participant_id"),
)

# SendGrid Event Webhook events already applied, by SendGrid's own id (it sends duplicates).
delivery_events = sa.Table(
    "delivery_events",
    metadata,
    sa.Column("sg_event_id", sa.String(100), primary_key=True),
    # From custom_args; NULL for an event about mail that is not ours.
    sa.Column("delivery_id", sa.Integer, nullable=True),
    # processed | delivered | deferred | bounce | blocked | dropped | spamreport | ...
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("occurred_at", Timestamp, nullable=False),
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Index("ix_delivery_events_delivery", "delivery_id"),
    sa.Index("ix_delivery_events_received", "received_at"),
)

# One line per erasure: what was removed, never whose (no address, no hash of it).
erasures = sa.Table(
    "erasures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("event_id", sa.Integer, nullable=True),
    sa.Column("participants", sa.Integer, nullable=False),
    # JSON counts per place: {"deliveries": 2, "stored_uploads": 1, "outbox_messages": 1, ...}
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("erased_at", Timestamp, nullable=False),
)
