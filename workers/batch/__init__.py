"""The batch coordinator: a worker kind that runs the batches clients submit
(docs/decisions/0020-batch-jobs.md)."""
