import dagster as dg

# One partition per upload (never per participant: the UI slows past ~40k partitions).
uploads_partitions = dg.DynamicPartitionsDefinition(name="uploads")
