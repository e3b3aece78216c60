"""A dispatcher writing to the outbox in its own process, for tests that kill it mid-write::

python -m event_pipeline_tests.mail.outbox_proc DATABASE_URL OUTBOX_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from event_pipeline.mail.outbox import MboxOutbox
from event_pipeline.steps import messages
from event_pipeline.store.db import make_engine
from event_pipeline_tests.mail.helpers import BASE_URL, CODEC, FROM


def main(argv: list[str]) -> int:
    url, outbox = argv
    ctx = messages.MailContext(
        sender=MboxOutbox(Path(outbox)),
        from_email=FROM,
        from_name="Dev Conference",
        codec=CODEC,
        checkin_base_url=BASE_URL,
    )
    stats = messages.dispatch(make_engine(url), ctx)
    print(stats.as_metadata(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
