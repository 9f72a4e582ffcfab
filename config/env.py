"""Small, loud helpers that read configuration from the environment (settings only)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

# The key parsers live in core (which must not import config); re-exported for settings code.
from core.keys import decode_key, parse_field_keys

__all__ = [
    "apply_dev_env_file",
    "decode_key",
    "env_bool",
    "env_cache_url",
    "env_choice",
    "env_int",
    "env_list",
    "env_networks",
    "env_rate",
    "env_str",
    "parse_field_keys",
    "read_env_file",
]


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0, not {value!r}")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}")
    return number


def env_rate(name: str, default: str) -> str | None:
    """A DRF rate such as `1200/minute`; an empty value turns the limit off (None)."""
    value = os.environ.get(name, default).strip()
    if not value:
        return None
    count, sep, period = value.partition("/")
    if not sep or not count.isdigit() or int(count) < 1 or period[:1] not in ("s", "m", "h", "d"):
        raise ImproperlyConfigured(f"{name} must look like 1200/minute, not {value!r}")
    return value


def env_list(name: str, default: str) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        value = default
    return [part.strip() for part in value.split(",") if part.strip()]


def env_networks(name: str, default: str) -> list[str]:
    """Comma-separated IP addresses or networks (`10.0.0.0/8`), checked."""
    networks = env_list(name, default)
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must list IP addresses or networks, not {network!r}") from None
    return networks


def env_cache_url(name: str) -> str | None:
    """A Redis URL (`redis://`, `rediss://` or `unix://`), or None when unset."""
    value = env_str(name)
    if value is None:
        return None
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"{name} must be a redis://host:port/db URL")
    return value


def read_env_file(path) -> dict[str, str]:
    """`NAME=value` lines of an env file (comments, blank lines and matching quotes allowed)."""
    values: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        name, value = name.strip().removeprefix("export ").strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def apply_dev_env_file(path, environ=None) -> list[str]:
    """Fill unset variables from the development env file `scripts/run.sh` writes, if present.

    The environment always wins, and the file counts only when DEBUG ends up on: a shell or
    service that sets DEBUG=0 never sees it. Returns the names it filled in. Only manage.py
    calls this; the WSGI module (gunicorn, production) never does.
    """
    environ = os.environ if environ is None else environ
    path = Path(path)
    if not path.is_file():
        return []
    values = read_env_file(path)
    debug = environ.get("DEBUG") or values.get("DEBUG", "")
    if debug.lower() not in ("1", "true", "yes", "on"):
        return []
    filled = [name for name in values if not environ.get(name)]
    for name in filled:
        environ[name] = values[name]
    return filled
