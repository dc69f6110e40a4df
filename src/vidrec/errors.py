"""Errors that know their HTTP status.

Every error vidrec raises on purpose derives from `VidrecError`, so the CLI and
the servers map bad input to a 4xx and a clear message, never to a 500 or a
traceback. Never raise a bare Exception for something the user can fix.
"""

from __future__ import annotations

from typing import Any


class VidrecError(Exception):
    """Base class: a message for people plus machine-readable details."""

    http_status = 500
    code = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": self.code,
            "status": self.http_status,
            "message": self.message,
            **({"details": self.details} if self.details else {}),
        }


class InvalidInput(VidrecError):
    """Malformed input: unreadable file, bad JSON, wrong type (400)."""

    http_status = 400
    code = "invalid_input"


class SchemaError(InvalidInput):
    """A table or request lacks a column/field or has the wrong type (422)."""

    http_status = 422
    code = "schema_error"


class ConfigError(InvalidInput):
    """A settings file or flag is wrong: unknown key, out-of-range value (400)."""

    code = "config_error"


class LeakageError(VidrecError):
    """A feature used a fact that was not yet available at prediction time (422).

    Raised by the training-set builder; it names the feature so the definition
    can be fixed. It is never downgraded to a warning.
    """

    http_status = 422
    code = "feature_leakage"


class NotFound(VidrecError):
    """A named thing (model version, alias, file) does not exist (404)."""

    http_status = 404
    code = "not_found"


class NotReady(VidrecError):
    """A dependency (model, store, server) is not loaded or reachable yet (503)."""

    http_status = 503
    code = "not_ready"


class Conflict(VidrecError):
    """A request clashes with what is already there (409): a write based on a stale
    version lost to a concurrent one (re-read, retry), an id already taken."""

    http_status = 409
    code = "conflict"
