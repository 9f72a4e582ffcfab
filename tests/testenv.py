"""The test run's environment (production-like, fixed test keys): the one copy of the test keys.

Loaded with `-p` before Django starts, it puts `TEST_ENV` in os.environ; tests that start
processes (manage.py, gunicorn) pass `TEST_ENV` to them, and key tests compare with the raw keys.
"""

import base64
import os
from types import MappingProxyType

TEST_SUBJECT_KEY = b"s" * 32
TEST_FIELD_KEY = b"f" * 32
TEST_FIELD_KEYS = "test1:" + base64.b64encode(TEST_FIELD_KEY).decode()  # key id "test1"
TEST_AUDIT_SIGNING_KEY = b"a" * 32
TEST_OPRF_KEY = b"o" * 32

TEST_ENV = MappingProxyType(
    {
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "0",
        "SECRET_KEY": "test-secret-key-not-for-production-" + "x" * 20,
        "EXCHANGE_SUBJECT_KEY": base64.b64encode(TEST_SUBJECT_KEY).decode(),
        "EXCHANGE_FIELD_KEYS": TEST_FIELD_KEYS,
        "EXCHANGE_AUDIT_SIGNING_KEY": base64.b64encode(TEST_AUDIT_SIGNING_KEY).decode(),
        "EXCHANGE_OPRF_KEY": base64.b64encode(TEST_OPRF_KEY).decode(),
        "EXCHANGE_THROTTLE_RATE": "",
        "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
    }
)

os.environ.update(TEST_ENV)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
