"""Domain errors of the control plane's services; one handler in the app maps them to HTTP."""

from __future__ import annotations

__all__ = ["Conflict", "DomainError", "Forbidden", "Invalid", "NotFound"]


class DomainError(Exception):
    """A request the services refuse; ``status`` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(DomainError):
    """Bad input: the message names the field and says what to send instead."""


class NotFound(DomainError):
    """An unknown deployment, revision, bento, model or cluster."""

    status = 404


class Conflict(DomainError):
    """The request cannot apply to the current state (e.g. a create of an existing name)."""

    status = 409


class Forbidden(DomainError):
    """The request's token lacks the scope the request needs."""

    status = 403
