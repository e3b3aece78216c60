"""A dispatcher in its own process, for tests that kill it mid-send::

python -m event_pipeline_tests.mail.dispatcher_proc DATABASE_URL SENDGRID_HOST API_KEY WORKERS
"""

from __future__ import annotations

import sys

from event_pipeline.mail.senders import SendGridSender
from event_pipeline.steps import messages
from event_pipeline.store.db import make_engine
from event_pipeline_tests.mail.helpers import BASE_URL, CODEC, FROM


def main(argv: list[str]) -> int:
    url, host, api_key, workers = argv
    ctx = messages.MailContext(
        sender=SendGridSender(api_key, host=host, timeout_s=30),
        from_email=FROM,
        from_name="Dev Conference",
        codec=CODEC,
        checkin_base_url=BASE_URL,
        workers=int(workers),
    )
    stats = messages.dispatch(make_engine(url), ctx)
    print(stats.as_metadata(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
