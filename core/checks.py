"""System checks: production must never start on missing or malformed secrets."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

from core.keys import decode_key, parse_field_keys

SECRETS_TAG = "exchange_secrets"


@register(Tags.security, SECRETS_TAG)
def check_secrets(app_configs=None, **kwargs):
    errors = []
    required = {
        "SECRET_KEY": None if getattr(settings, "SECRET_KEY_MISSING", False) else settings.SECRET_KEY,
        "EXCHANGE_SUBJECT_KEY": settings.EXCHANGE_SUBJECT_KEY,
        "EXCHANGE_FIELD_KEYS": settings.EXCHANGE_FIELD_KEYS,
        "EXCHANGE_AUDIT_SIGNING_KEY": settings.EXCHANGE_AUDIT_SIGNING_KEY,
        "EXCHANGE_OPRF_KEY": settings.EXCHANGE_OPRF_KEY,
    }
    for name, value in required.items():
        if not value:
            errors.append(
                Error(
                    f"{name} is not set.",
                    hint=f"Set {name} in the environment (`manage.py generate_keys` makes one), "
                    "or DEBUG=1 for development.",
                    id="exchange.E001",
                )
            )
    parsers = {
        "EXCHANGE_SUBJECT_KEY": lambda v: decode_key("EXCHANGE_SUBJECT_KEY", v),
        "EXCHANGE_FIELD_KEYS": parse_field_keys,
        "EXCHANGE_AUDIT_SIGNING_KEY": lambda v: decode_key("EXCHANGE_AUDIT_SIGNING_KEY", v),
        "EXCHANGE_OPRF_KEY": lambda v: decode_key("EXCHANGE_OPRF_KEY", v),
    }
    for name, parse in parsers.items():
        value = required[name]
        if value:
            try:
                parse(value)
            except ImproperlyConfigured as exc:
                errors.append(Error(str(exc), id="exchange.E002"))
    return errors


def refuse_to_start_without_secrets() -> None:
    """For servers, which do not run system checks: raise naming every missing secret."""
    errors = check_secrets()
    if errors:
        raise ImproperlyConfigured("; ".join(f"{e.msg} {e.hint or ''}".strip() for e in errors))
