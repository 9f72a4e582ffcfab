"""The benchmarks' fixed, public keys and production-like settings: one copy for every bench script.
Never a production key."""

import base64

BENCH_KEYS = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DEBUG": "0",
    "SECURE_SSL_REDIRECT": "0",
    "SECRET_KEY": "bench-secret-key-not-for-production-" + "x" * 20,
    "EXCHANGE_SUBJECT_KEY": base64.b64encode(b"s" * 32).decode(),
    "EXCHANGE_FIELD_KEYS": "bench1:" + base64.b64encode(b"f" * 32).decode(),
    "EXCHANGE_AUDIT_SIGNING_KEY": base64.b64encode(b"a" * 32).decode(),
    "EXCHANGE_OPRF_KEY": base64.b64encode(b"o" * 32).decode(),
}


def setdefault_environ(environ, **extra: str) -> None:
    """Fill what the environment does not set yet: a run may still give its own values."""
    for name, value in {**BENCH_KEYS, **extra}.items():
        environ.setdefault(name, value)
