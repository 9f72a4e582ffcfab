"""Security tests' shared pieces: every API endpoint enumerated from the URL conf, and an owner
(bank_a) holding one of everything, so that tests can aim at real objects."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from config import api_urls
from exchange.bulk import worker
from exchange.evidence import evidence_requests_open
from tests.conftest import Persona
from tests.factories import consent, record, subject

PREFIX = "/api/v1/"
METHODS = ("get", "post", "put", "patch", "delete")


def api_endpoints() -> list[tuple[str, str]]:
    """(METHOD, "/api/v1/path/{param}") for every method every view of config.api_urls implements."""
    endpoints = []
    for pattern in api_urls.urlpatterns:
        view = pattern.callback.view_class
        template = PREFIX + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        endpoints += [(method.upper(), template) for method in METHODS if hasattr(view, method)]
    return endpoints


@dataclass
class World:
    """bank_a's objects, by the path parameter that names each kind."""

    owner: Persona
    ids: dict[str, str] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)

    def path(self, template: str, **overrides: str) -> str:
        return template.format(**{**self.ids, **overrides})


OWNER_REFERENCE = "OWNER-LOAN-SECRET-7731"


def build_world(owner: Persona, tmp_path) -> World:
    """One record (disputed by the owner itself, from its own inquiry), a consent, an inquiry,
    a dispute, a processed bulk submission and an evidence request on the inquiry, all the owner's."""
    client = owner.client
    response = client.post("/api/v1/records", {"records": [record(OWNER_REFERENCE, 7)]}, format="json")
    assert response.status_code == 201, response.content
    record_id = response.json()["results"][0]["id"]
    granted = client.post("/api/v1/consents", consent(7), format="json")
    assert granted.status_code == 201, granted.content
    consent_id = granted.json()["id"]
    body = {"subject": subject(7), "consent_id": consent_id, "purpose": "credit_application"}
    inquiry = client.post("/api/v1/inquiries", body, format="json")
    assert inquiry.status_code == 200, inquiry.content
    inquiry_id = inquiry.json()["id"]
    filed = client.post("/api/v1/disputes", {"inquiry_id": inquiry_id, "line": 0, "reason": "not mine"}, format="json")
    assert filed.status_code == 201, filed.content
    csv = (
        "member_reference,id_type,id_number,product,principal,amount_overdue,days_past_due,status,"
        "opened_on,delinquent_since,as_of,notice_sent_on\n"
        "OWNER-BULK-1,CN_RIC,{id},consumer_loan,100.00,10.00,40,delinquent,2025-01-10,2026-08-01,"
        "2026-09-15,2026-08-20\nOWNER-BULK-2,CN_RIC,bad,consumer_loan,1,1,1,delinquent,2025-01-10,"
        "2026-08-01,2026-09-15,2026-08-20\n"
    ).format(id=subject(8)["id_number"])
    uploaded = client.generic("POST", "/api/v1/submissions", csv.encode(), content_type="text/csv")
    assert uploaded.status_code == 202, uploaded.content
    submission_id = uploaded.json()["id"]
    worker.submission_process(submission_id)
    [spot_check] = evidence_requests_open(member=owner.member, actor="staff:carl", inquiry_ids=[inquiry_id])
    return World(
        owner=owner,
        ids={
            "record_id": record_id,
            "consent_id": consent_id,
            "inquiry_id": inquiry_id,
            "dispute_id": filed.json()["id"],
            "submission_id": submission_id,
            "evidence_request_id": str(spot_check.pk),
        },
        references=[OWNER_REFERENCE, "OWNER-BULK-1", "OWNER-BULK-2"],
    )


@pytest.fixture
def submissions_dir(settings, tmp_path):
    settings.EXCHANGE_SUBMISSIONS_DIR = tmp_path / "submissions"
    return settings.EXCHANGE_SUBMISSIONS_DIR


@pytest.fixture
def world(bank_a, submissions_dir, tmp_path) -> World:
    return build_world(bank_a, tmp_path)
