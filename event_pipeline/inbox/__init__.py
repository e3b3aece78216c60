"""The watched folder as plain file-system code (no database, no Dagster): listing without following
links, deciding when a file has settled, and moving entries aside. Every listing function is total:
a bad entry comes back as data (a Misfit or a problem line), never as an exception."""

from event_pipeline.inbox.manifest import Manifest, ManifestError, manifest_path, read_manifest
from event_pipeline.inbox.moves import hold, move_aside
from event_pipeline.inbox.names import safe_name, suffix_of
from event_pipeline.inbox.scan import (
    IGNORED_PATTERNS,
    Candidate,
    ChangedUnderfoot,
    Listing,
    Misfit,
    hash_candidate,
    is_ignored,
    list_inbox,
    still_same,
)
from event_pipeline.inbox.settle import (
    DEFAULT_SETTLE_SECONDS,
    SETTLE_ENV,
    Sighting,
    advance,
    is_settled,
    settle_seconds,
)
from event_pipeline.inbox.writers import CAN_TELL, open_for_writing

__all__ = [
    "CAN_TELL",
    "DEFAULT_SETTLE_SECONDS",
    "IGNORED_PATTERNS",
    "SETTLE_ENV",
    "Candidate",
    "ChangedUnderfoot",
    "Listing",
    "Manifest",
    "ManifestError",
    "Misfit",
    "Sighting",
    "advance",
    "hash_candidate",
    "hold",
    "is_ignored",
    "is_settled",
    "list_inbox",
    "manifest_path",
    "move_aside",
    "open_for_writing",
    "read_manifest",
    "safe_name",
    "settle_seconds",
    "still_same",
    "suffix_of",
]
