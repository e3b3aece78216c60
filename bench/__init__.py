"""`make bench`: stage-by-stage measurements of the pipeline, beside the naive path and the floor."""
