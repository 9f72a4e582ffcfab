"""Loaded with `-p` before Django starts: the test run's environment (production-like, fixed test keys)."""

import base64
import os

_TEST_ENV = {
    "DEBUG": "0",
    "SECURE_SSL_REDIRECT": "0",
    "SECRET_KEY": "test-secret-key-not-for-production-" + "x" * 20,
    "EXCHANGE_SUBJECT_KEY": base64.b64encode(b"s" * 32).decode(),
    "EXCHANGE_FIELD_KEYS": "test1:" + base64.b64encode(b"f" * 32).decode(),
    "EXCHANGE_AUDIT_SIGNING_KEY": base64.b64encode(b"a" * 32).decode(),
    "EXCHANGE_THROTTLE_RATE": "",
    "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
}
for _name, _value in _TEST_ENV.items():
    os.environ[_name] = _value
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
