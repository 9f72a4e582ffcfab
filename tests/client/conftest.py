"""The `fake` fixture: a FakeExchange the cx command speaks to (CX_URL, CX_API_KEY and a pin file
set; no sleeping between polls), its upload answering SUBMISSION, queued."""

from __future__ import annotations

import pytest
from cx_client import cli

from tests.client.fakes import SUBMISSION, FakeExchange


@pytest.fixture
def fake(tmp_path, monkeypatch):
    fake = FakeExchange()
    monkeypatch.setenv("CX_URL", "https://exchange.example")
    monkeypatch.setenv("CX_API_KEY", "unused")
    monkeypatch.setenv("CX_PIN_FILE", str(tmp_path / "pin.json"))
    monkeypatch.setattr(cli, "http_transport", lambda url, key: fake)
    monkeypatch.setattr(cli, "sleep", lambda seconds: None)
    fake.routes["POST", "submissions"] = (202, {"id": SUBMISSION, "status": "queued", "duplicate": False})
    return fake
