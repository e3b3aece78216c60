"""Placeholder: filled by the corrections-loop work (issue 15)."""

import dagster as dg

JOBS: list[dg.JobDefinition] = []
SCHEDULES: list[dg.ScheduleDefinition] = []
