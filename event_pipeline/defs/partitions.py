import dagster as dg

UPLOADS = "uploads"
# One partition per upload (never per participant: the UI slows past ~40k partitions).
uploads_partitions = dg.DynamicPartitionsDefinition(name=UPLOADS)
