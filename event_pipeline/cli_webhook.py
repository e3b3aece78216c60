"""Placeholder: filled by the corrections-loop work (issue 15)."""

import click

COMMANDS: list[click.Command] = []
