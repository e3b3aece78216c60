"""SQL storage: tables, migrations, and the operations the pipeline needs. Knows nothing of Dagster."""
