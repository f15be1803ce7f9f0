"""Operator tools on top of the workers: the `fleet` command, the local fleet it runs and
watches, the demo, and read-only views of lag and job state."""
