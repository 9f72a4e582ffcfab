"""The request id of the work in progress, for audit events and log lines."""

from __future__ import annotations

import contextvars

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def current_request_id() -> str:
    return _request_id.get()


def set_request_id(value: str) -> contextvars.Token:
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token) -> None:
    _request_id.reset(token)


# Whether the refusal of the request in progress is already on record (audit.services sets it; the
# API's exception handler audits any refusal still unrecorded); reset as each API request starts.
_denial_recorded: contextvars.ContextVar[bool] = contextvars.ContextVar("denial_recorded", default=False)


def reset_denial() -> None:
    _denial_recorded.set(False)


def note_denial() -> None:
    _denial_recorded.set(True)


def denial_recorded() -> bool:
    return _denial_recorded.get()
