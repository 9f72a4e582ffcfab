"""Helpers shared by management commands."""

from __future__ import annotations

import getpass
import json
import os

from django.core.management.base import CommandError


def cli_actor(command: str) -> str:
    """The audit actor of a command run by an operator on the server."""
    user = os.environ.get("EXCHANGE_OPERATOR") or getpass.getuser()
    return f"cli:{user}:{command}"[:120]


def print_json(stdout, payload: dict) -> None:
    stdout.write(json.dumps(payload))


def get_or_fail(model, message: str, **lookup):
    try:
        return model.objects.get(**lookup)
    except model.DoesNotExist:
        raise CommandError(message) from None
