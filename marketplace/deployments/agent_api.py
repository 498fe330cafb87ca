"""/api/v1/leases/{lease_id}/events: what a node's agent reports about a lease it runs
(provisioning, running, log lines, exit), authenticated by the node's secret (providers.auth).

Thin: validate, call `marketplace.deployments.services.lease_events`. Mounted at /api/v1 beside
the providers' node routes, under the same "nodes" tag: the agent (sdk/spheron_sdk/fizz) sees one API.
"""

from __future__ import annotations

from typing import Annotated, Literal

from django.http import HttpRequest
from ninja import Router, Status
from pydantic import BaseModel, Field, StrictInt, StringConstraints, field_validator

from core.errors import ApplicationError
from core.schemas import ERRORS, AgentIn
from marketplace.deployments import services as deployments
from providers.auth import NodeSecretEventsAuth

router = Router(tags=["nodes"])

MAX_LOG_LINES = 1000  # per request, over all its events

# The agent's lease states (providers.models.AgentState, but `assigned`, which is the server's own)
# and "log". Spelled out so the OpenAPI lists them in this order; a test keeps them in step.
EventType = Literal["provisioning", "running", "log", "exited", "failed", "stopped"]


class LeaseEventIn(AgentIn):
    type: EventType
    at: Annotated[str, StringConstraints(max_length=40)] | None = None
    message: Annotated[str, StringConstraints(max_length=2000)] = ""
    stream: Literal["stdout", "stderr"] | None = None
    lines: list[Annotated[str, StringConstraints(max_length=8192)]] = Field(
        default_factory=list, max_length=MAX_LOG_LINES
    )
    exit_code: StrictInt | None = Field(None, ge=-255, le=255)


class LeaseEventsIn(AgentIn):
    events: list[LeaseEventIn] = Field(min_length=1, max_length=200)

    @field_validator("events")
    @classmethod
    def _line_budget(cls, events: list[LeaseEventIn]) -> list[LeaseEventIn]:
        if sum(len(event.lines) for event in events) > MAX_LOG_LINES:
            raise ValueError("at most 1,000 log lines per request")
        return events


class AcceptedOut(BaseModel):
    accepted: int


@router.post(
    "/leases/{lease_id}/events",
    auth=NodeSecretEventsAuth(),
    response={202: AcceptedOut, **ERRORS},
    operation_id="lease_events",
    summary="A node reports what happened to a lease it runs: provisioning, running, logs, exit",
)
def lease_events(request: HttpRequest, lease_id: int, payload: LeaseEventsIn):
    events = [event.model_dump() for event in payload.events]
    if not deployments.lease_events(request.auth, lease_id, events):  # type: ignore[arg-type]
        raise ApplicationError("No such lease on this node.", status=404)
    return Status(202, {"accepted": len(events)})
