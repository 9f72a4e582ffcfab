"""Response headers (issue #18): a Content-Security-Policy on the console and the API, and request
ids chosen by the caller only in a safe form."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def directives(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.strip() for part in header.split(";") if part.strip()}


def test_api_answers_allow_nothing_to_load_run_or_frame_them(bank_a, outsider):
    for response in (bank_a.client.get("/api/v1/records"), outsider.get("/api/v1/records")):
        policy = directives(response)
        assert policy["default-src"] == "default-src 'none'"
        assert policy["frame-ancestors"] == "frame-ancestors 'none'"


def test_the_console_runs_scripts_only_from_its_own_origin(client):
    user = get_user_model().objects.create_superuser("op", "op@example.invalid", "a-long-password-1")
    for response in (client.get("/admin/login/"), client.force_login(user) or client.get("/admin/")):
        policy = directives(response)
        assert policy["script-src"] == "script-src 'self'"
        assert policy["object-src"] == "object-src 'none'" and policy["frame-ancestors"] == "frame-ancestors 'none'"
        assert "<script>" not in response.content.decode()  # nothing inline for the policy to refuse
        assert " onclick=" not in response.content.decode()


def test_the_api_docs_have_no_inline_script(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert directives(page)["script-src"] == "script-src 'self'"
    body = page.content.decode()
    assert "<script>" not in body and "?script=" in body  # Swagger UI's set-up script is a file
    script = client.get("/api/v1/docs?script=")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content


@pytest.mark.parametrize(
    "value",
    ["", "a" * 65, "bad id", "id\r\nSet-Cookie: x=1", "<script>", "é-unicode-id", "short"],
)
def test_a_request_id_in_an_unsafe_form_is_replaced_everywhere(bank_a, value):
    response = bank_a.client.get("/api/v1/records", HTTP_X_REQUEST_ID=value)
    chosen = response["X-Request-ID"]
    assert chosen != value and len(chosen) == 32
    assert AuditEvent.objects.filter(action="record.list").latest("id").request_id == chosen


def test_a_safe_request_id_is_kept_and_audited(bank_a):
    response = bank_a.client.get("/api/v1/records", HTTP_X_REQUEST_ID="batch-2026.11_run-7")
    assert response["X-Request-ID"] == "batch-2026.11_run-7"
    assert AuditEvent.objects.filter(action="record.list").latest("id").request_id == "batch-2026.11_run-7"
