"""Plain-Python steps of one upload. Each Dagster asset calls one of these; the CLI reuses them."""
