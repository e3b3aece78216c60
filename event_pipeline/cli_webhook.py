"""``event-pipeline webhook serve``: the SendGrid Event Webhook receiver on uvicorn."""

from __future__ import annotations

import click

from event_pipeline import settings
from event_pipeline.cli_common import Unusable, echo_json, engine

DEFAULT_PORT = 3001


@click.group()
def webhook() -> None:
    """SendGrid's signed delivery events (processed, delivered, bounce, dropped)."""


@webhook.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535))
@click.option("--json", "as_json", is_flag=True, help="Say where it listens as JSON, then serve.")
@click.option(
    "--only-if-configured",
    is_flag=True,
    help="Without SENDGRID_WEBHOOK_PUBLIC_KEY, say so and exit 0 instead of refusing (`make run`).",
)
def serve(host: str, port: int, as_json: bool, only_if_configured: bool) -> None:
    """Receive SendGrid's events at POST /sendgrid/events until stopped (Ctrl-C, SIGTERM).

    Needs SENDGRID_WEBHOOK_PUBLIC_KEY: the verification key of the Event Webhook's signature
    (SendGrid: Settings > Mail Settings > Event Webhook > Signature Verification). Set it where
    mail is sent too: a dispatcher that crashed is then never sent again before its events had
    10 minutes to arrive."""
    import uvicorn

    from event_pipeline.webhook.app import PATH, create_app
    from event_pipeline.webhook.signature import BadPublicKey

    public_key = settings.sendgrid_webhook_public_key()
    if public_key is None:
        if only_if_configured:
            said = "webhook receiver not started: SENDGRID_WEBHOOK_PUBLIC_KEY is not set"
            if as_json:
                echo_json({"listening": None, "reason": said})
            else:
                click.echo(said)
            return
        raise Unusable(
            "SENDGRID_WEBHOOK_PUBLIC_KEY is not set: copy the Event Webhook's verification key from SendGrid "
            "(Settings > Mail Settings > Event Webhook > Signature Verification)"
        )
    try:
        app = create_app(engine(), public_key)
    except BadPublicKey as exc:
        raise Unusable(str(exc)) from None
    url = f"http://{host}:{port}{PATH}"
    if as_json:
        echo_json({"listening": url})
    else:
        click.echo(f"receiving SendGrid events at {url}")
    # access_log off: uvicorn's lines are harmless (path, status) but one per batch is noise; the
    # app logs its own counts and refusals.
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, server_header=False)


COMMANDS: list[click.Command] = [webhook]
