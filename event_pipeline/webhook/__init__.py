"""SendGrid's signed Event Webhook: a small ASGI app (``app.py``) over ``steps.delivery_events``."""
