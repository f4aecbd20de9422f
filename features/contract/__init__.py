"""The data contract: the vocabulary of event types and codes (vocabulary.yaml), the checks
every row of a registry passes, and a dataset's codebook of coded assessments."""
