"""Who did it: one builder per kind of actor, so an event names the same person the same way everywhere.

Actors never carry a secret: a member key appears only by its public prefix.
"""

from __future__ import annotations

import getpass
import os

MAX_LENGTH = 120  # AuditEvent.actor's column width


def _fit(actor: str) -> str:
    return actor[:MAX_LENGTH]


def member_actor(member_code: str, key_prefix: str | None = None) -> str:
    """A member institution calling the API, with the prefix of the key it used."""
    return _fit(f"member:{member_code}/key:{key_prefix}" if key_prefix else f"member:{member_code}")


def key_actor(key_prefix: str | None) -> str:
    """Someone presenting a key that did not authenticate: its prefix if it has one."""
    return _fit(f"key:{key_prefix}") if key_prefix else "anonymous"


def client_actor(address: str) -> str:
    """A client address, for refusals counted per address (failed authentications)."""
    return _fit(f"client:{address}")


def staff_actor(username: str) -> str:
    """A member of the exchange's staff in the console (also for a failed login under that name)."""
    return _fit(f"staff:{username}") if username else "anonymous"


def cli_actor(command: str) -> str:
    """An operator running a management command on a server (EXCHANGE_OPERATOR names them)."""
    user = os.environ.get("EXCHANGE_OPERATOR") or getpass.getuser()
    return _fit(f"cli:{user}:{command}")
