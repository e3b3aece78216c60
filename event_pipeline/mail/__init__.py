"""Mail: rendering, senders, delivery policy. Decides how to send, never who gets mail."""
