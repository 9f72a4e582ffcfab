"""Helpers shared by management commands."""

from __future__ import annotations

import json

from django.core.management.base import CommandError


def print_json(stdout, payload: dict) -> None:
    stdout.write(json.dumps(payload))


def get_or_fail(model, message: str, **lookup):
    try:
        return model.objects.get(**lookup)
    except model.DoesNotExist:
        raise CommandError(message) from None
