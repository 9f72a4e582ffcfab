"""Test data: valid identifiers (with correct check characters) and record payloads."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

_RIC_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_RIC_CHECK = "10X98765432"


def ric(n: int, born: date = date(1985, 3, 14), region: str = "110105") -> str:
    """A valid 18-character resident ID, different for each n (0-999)."""
    body = f"{region}{born:%Y%m%d}{n % 1000:03d}"
    return body + _RIC_CHECK[sum(int(c) * w for c, w in zip(body, _RIC_WEIGHTS, strict=True)) % 11]


def subject(n: int, **extra) -> dict:
    return {"id_type": "CN_RIC", "id_number": ric(n), **extra}


def record(ref: str, n: int = 1, **overrides) -> dict:
    data = {
        "member_reference": ref,
        "subject": subject(n, name="Zhang San"),
        "product": "consumer_loan",
        "currency": "CNY",
        "principal": "10000.00",
        "amount_overdue": "1500.50",
        "days_past_due": 45,
        "status": "delinquent",
        "opened_on": "2025-01-10",
        "delinquent_since": "2026-08-01",
        "as_of": "2026-09-15",
        "notice_sent_on": "2026-08-20",
        "payment_history": "NNNN12",
    }
    data.update(overrides)
    return data


def consent(n: int, purpose: str = "credit_application", **overrides) -> dict:
    now = datetime.now(UTC)
    data = {
        "subject": subject(n),
        "purpose": purpose,
        "granted_at": (now - timedelta(days=1)).isoformat(),
        "expires_at": (now + timedelta(days=90)).isoformat(),
        "evidence_sha256": hashlib.sha256(f"consent {n}".encode()).hexdigest(),
        "channel": "app",
    }
    data.update(overrides)
    return data
