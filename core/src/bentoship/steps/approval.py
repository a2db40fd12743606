"""The approval step: a person says yes or no to the held candidate before it is promoted."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from html import escape
from typing import Any

from ..client import Client
from ..errors import ApprovalRejected, InvalidRequestError
from ..models import Rollout, RolloutLike
from ..signals import terminated_raises
from ..step_spans import traced_step

__all__ = [
    "NOT_REQUIRED",
    "Approval",
    "evidence_of",
    "outcome_of",
    "request_approval",
    "start_approval",
]

log = logging.getLogger("bentoship.steps")
POLL_SECONDS = 30.0
NOT_REQUIRED = "not_required"
"""The state of an approval the pipeline did not ask for (``request_approval(required=False)``)."""
PAGE_STYLE = (
    "body{font:14px/1.45 system-ui,sans-serif;color:#1d2330;margin:24px;max-width:1100px}"
    "h1{font-size:20px}h2{font-size:16px;margin-top:28px}table{border-collapse:collapse}"
    "th,td{text-align:left;vertical-align:top;padding:6px 10px;border-bottom:1px solid #e3e6ec}"
    ".approved{color:#067647}.rejected,.expired,.withdrawn{color:#b42318}.muted{color:#667085}"
)


@dataclass(frozen=True)
class Approval:
    """A decision on a held candidate: ``state`` is ``approved``, ``rejected``, ``expired``
    (nobody decided in time), ``withdrawn`` (the candidate left first) or ``not_required``
    (nobody was asked)."""

    id: str
    deployment: str
    revision: str
    state: str
    message: str
    evidence: dict[str, Any]
    decided_by: str | None
    comment: str

    @property
    def approved(self) -> bool:
        return self.state == "approved"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Approval:
        return cls(
            str(data["id"]),
            str(data["deployment"]),
            str(data["revision"]),
            str(data["state"]),
            str(data.get("message") or ""),
            dict(data.get("evidence") or {}),
            data.get("decided_by"),
            str(data.get("comment") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def html(self) -> str:
        """The decision as one self-contained HTML page: who, why, the message and evidence."""
        state = escape(self.state)
        if self.state == NOT_REQUIRED:
            who = "<p class=muted>No approval was required: nobody was asked.</p>"
        elif self.decided_by:
            said = f": {escape(self.comment)}" if self.comment else ""
            who = f"<p>{state.capitalize()} by <b>{escape(self.decided_by)}</b>{said}</p>"
        else:
            who = f"<p>{state.capitalize()}: nobody decided.</p>"
        rows = "".join(
            f"<tr><th>{escape(key)}</th><td>{_evidence_cell(value)}</td></tr>"
            for key, value in self.evidence.items()
        )
        evidence = f"<table>{rows}</table>" if rows else "<p class=muted>No evidence given.</p>"
        message = f"<p>{escape(self.message)}</p>" if self.message else ""
        ident = f" (approval {escape(self.id)})" if self.id else ""
        return (
            f"<!doctype html><html><head><meta charset=utf-8><title>Approval</title>"
            f"<style>{PAGE_STYLE}</style></head><body>"
            f"<h1>Approval of {escape(self.deployment)} {escape(self.revision)}: "
            f"<span class={state}>{state}</span></h1>{who}{message}"
            f"<h2>Evidence</h2>{evidence}<p class=muted>{escape(self.deployment)}{ident}</p>"
            "</body></html>"
        )


def _evidence_cell(value: Any) -> str:
    """A link for a URL, a report's summary line, else the value as JSON; escaped."""
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return f'<a href="{escape(value)}">{escape(value)}</a>'
    if isinstance(value, dict) and isinstance(value.get("summary"), str):
        return escape(value["summary"])
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return escape(text)


def evidence_of(evidence: dict[str, Any] | None) -> dict[str, Any]:
    """Evidence as JSON: a report (shadow, quality, drift, canary) by its ``to_dict()`` and
    its ``summary()`` line; links and figures as they are."""
    found: dict[str, Any] = {}
    for key, value in (evidence or {}).items():
        if hasattr(value, "to_dict"):
            entry = {"report": value.to_dict()}
            if hasattr(value, "summary"):
                entry["summary"] = value.summary()
            found[str(key)] = entry
        elif isinstance(value, str | int | float | bool | list | dict) or value is None:
            found[str(key)] = value
        else:
            found[str(key)] = str(value)
    return found


@traced_step("approval")
def request_approval(
    target: RolloutLike,
    message: str = "",
    timeout: float = 86400.0,
    evidence: dict[str, Any] | None = None,
    *,
    client: Client | None = None,
    raise_on_failure: bool = True,
    required: bool = True,
) -> Approval:
    """Ask a person to approve the rollout's held candidate, and wait for the decision.

    The control plane keeps the approval with its ``evidence`` (reports or links of the
    pipeline's checks), promotes the candidate when someone approves (`bentoship approve`, the
    console, the API), and discards it when someone rejects or ``timeout`` seconds pass; this
    step only waits (a long poll), so one that dies leaves no candidate waiting forever.
    A candidate not approved raises ApprovalRejected (unless ``raise_on_failure=False``).
    With ``required=False`` it asks nobody and calls no server: the state is ``not_required``
    and the candidate stays held, for the pipeline's promote step.
    """
    if not required:
        rollout = Rollout.parse(target)
        log.info("%s %s: no approval required", rollout.name, rollout.revision)
        shown = evidence_of(evidence)
        return Approval(
            "", rollout.name, rollout.revision or "", NOT_REQUIRED, message, shown, None, ""
        )
    client = client or Client()
    name = Rollout.parse(target).name
    record = start_approval(target, message, timeout, evidence, client=client)
    deadline = time.monotonic() + timeout + 60.0
    with terminated_raises():
        while record["state"] == "pending" and time.monotonic() < deadline:
            record = client.approval(name, record["id"], wait=POLL_SECONDS)
    return outcome_of(record, name, raise_on_failure=raise_on_failure)


def start_approval(
    target: RolloutLike,
    message: str = "",
    timeout: float = 86400.0,
    evidence: dict[str, Any] | None = None,
    *,
    client: Client,
) -> dict[str, Any]:
    """Check that ``target`` is a ready candidate on a control plane that holds approvals,
    then request one (the pending one again, if any): the approval route's JSON."""
    rollout = Rollout.parse(target)
    name = rollout.name
    if "approvals" not in client.get_extensions():
        raise InvalidRequestError(
            f"approvals need a control plane that holds candidates for a decision, which "
            f"{client.endpoint} does not (plain BentoCloud)"
        )
    dep = client.get_deployment(name)
    if not rollout.candidate or dep.candidate_revision != rollout.revision:
        raise InvalidRequestError(
            f"revision {rollout.revision} of {name} is not a ready candidate; deploy it with "
            "candidate=True and wait until it is ready before asking for approval"
        )
    record = client.request_approval(name, message, timeout, evidence_of(evidence))
    log.info(
        "approval %s of %s %s requested; waiting up to %g s (`bentoship approve %s` or "
        "`bentoship reject %s`)",
        record["id"],
        name,
        rollout.revision,
        timeout,
        name,
        name,
    )
    return record


def outcome_of(record: dict[str, Any], name: str, *, raise_on_failure: bool = True) -> Approval:
    """The decision an approval's JSON holds: the Approval, or ApprovalRejected when the
    candidate was not approved (unless ``raise_on_failure=False``)."""
    approval = Approval.from_api(record)
    if approval.approved:
        log.info("approval %s approved by %s", approval.id, approval.decided_by)
        return approval
    said = f" by {approval.decided_by}" if approval.decided_by else ""
    why = f": {approval.comment}" if approval.comment else ""
    text = (
        f"candidate {approval.revision} of {name} was not approved ({approval.state}{said}{why});"
        f" {name} serves what it served"
    )
    log.error("%s", text)
    if raise_on_failure:
        raise ApprovalRejected(text, deployment=name, approval=approval)
    return approval
