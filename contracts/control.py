"""Control messages to every worker of a kind (not jobs): cancel a request."""

from __future__ import annotations

from contracts.envelope import Request
from contracts.strict import StrictStruct


class CancelJob(StrictStruct, frozen=True, tag_field="kind", tag="cancel"):
    """The caller of ``request_id`` stopped waiting: stop the job, or never start it."""

    request_id: str
    tenant: str
    # Which submission of request_id: its deadline_ms as text (a resubmission has another).
    submission: str = ""


ControlMessage = CancelJob


def submission_of(request: Request) -> str:
    """Tells one submission of a request id from a later one: each has its own deadline."""
    return str(request.deadline_ms or "")
