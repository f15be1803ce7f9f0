"""The runtime of a worker: the consume loop, commit tracking, and the job runner (a chain
of small links around the handler) with the publisher it sends through."""
