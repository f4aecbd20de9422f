"""Batch work: rosters (runner, files, job settings), cohort scoring on Spark, the indicator
report."""
