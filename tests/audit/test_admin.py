"""The audit log in the admin console: read-only for everyone, chain status, verify and export."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from audit.export import verify_export
from audit.models import AuditEvent, Checkpoint
from audit.sealing import seal_pending
from audit.signing import public_key_b64
from tests.audit.conftest import make_events, run_sql


@pytest.fixture
def superuser_client(db) -> Client:
    user = User.objects.create_superuser("root-admin", "root@example.org", "a-long-test-password")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def officer_client(db) -> Client:
    """A compliance officer: may view the log and export it, nothing else."""
    user = User.objects.create_user("officer", "officer@example.org", "a-long-test-password", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_auditevent"), Permission.objects.get(codename="export_auditevent")
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(db) -> Client:
    user = User.objects.create_user("viewer", "viewer@example.org", "a-long-test-password", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def sealed(db) -> list[AuditEvent]:
    make_events(3, member_code="BANKA")
    make_events(2, member_code="BANKB", action="inquiry.create")
    seal_pending()
    # The staff log-in of the test's client is the first event (seq 1): these are the five made here.
    return list(AuditEvent.objects.exclude(action="staff.login").order_by("seq"))


def test_even_a_superuser_cannot_add_change_or_delete_events(superuser_client, sealed):
    event = sealed[0]
    assert superuser_client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert (
        superuser_client.post(reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code
        == 403
    )
    page = superuser_client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content
    superuser_client.post(reverse("admin:audit_auditevent_change", args=[event.pk]), {"action": "forged"})
    event.refresh_from_db()
    assert event.action == "record.submit"
    assert superuser_client.get(reverse("admin:audit_checkpoint_add")).status_code == 403


def test_the_changelist_shows_chain_status_filters_and_searches(superuser_client, sealed):
    page = superuser_client.get(reverse("admin:audit_auditevent_changelist"))
    text = page.content.decode()
    assert page.status_code == 200
    assert "Sealed up to <strong>seq 6</strong>" in text
    assert "Last checkpoint: seq 6" in text and "signature valid" in text
    filtered = superuser_client.get(reverse("admin:audit_auditevent_changelist"), {"action": "inquiry.create"})
    assert len(filtered.context["cl"].result_list) == 2
    token = sealed[2].subject_token  # the only event with it
    found = superuser_client.get(reverse("admin:audit_auditevent_changelist"), {"q": token})
    assert [e.pk for e in found.context["cl"].result_list] == [sealed[2].pk]
    assert AuditEvent.objects.filter(action="audit.browse", actor="staff:root-admin").exists()


def test_the_status_shows_a_checkpoint_that_no_longer_matches(superuser_client, sealed, lifted):
    run_sql(f"UPDATE {Checkpoint._meta.db_table} SET hash = %s", ["0" * 64])
    text = superuser_client.get(reverse("admin:audit_auditevent_changelist")).content.decode()
    assert "NOT VALID" in text


def test_a_compliance_officer_verifies_and_downloads_a_signed_export(officer_client, sealed):
    page = officer_client.get(reverse("admin:audit_auditevent_verify"))
    assert page.status_code == 200 and "OK 6 events" in page.content.decode()

    response = officer_client.post(reverse("admin:audit_auditevent_export"), {"format": "jsonl", "member": "BANKB"})
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = sorted(archive.namelist())
    assert len(names) == 2 and names[1] == names[0] + ".manifest.json"
    assert AuditEvent.objects.filter(action="audit.export", actor="staff:officer").exists()
    assert AuditEvent.objects.filter(action="audit.verify", actor="staff:officer").exists()


def test_a_downloaded_export_verifies_offline(officer_client, sealed, tmp_path):
    response = officer_client.post(reverse("admin:audit_auditevent_export"), {"format": "csv"})
    zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).extractall(tmp_path)
    export_file = next(p for p in tmp_path.iterdir() if p.suffix == ".csv")
    result = verify_export(export_file, public_key=public_key_b64())
    assert result.ok and result.count == 6


def test_the_verify_page_names_the_first_bad_event(officer_client, sealed, lifted):
    run_sql(f"UPDATE {AuditEvent._meta.db_table} SET outcome = 'error' WHERE seq = 2")
    text = officer_client.get(reverse("admin:audit_auditevent_verify")).content.decode()
    assert f"FAIL seq 2 (id {sealed[0].id}): hash mismatch" in text


def test_staff_without_the_export_permission_cannot_export_or_verify(viewer_client, sealed):
    assert viewer_client.get(reverse("admin:audit_auditevent_changelist")).status_code == 200
    assert viewer_client.get(reverse("admin:audit_auditevent_export")).status_code == 403
    assert viewer_client.post(reverse("admin:audit_auditevent_export"), {"format": "jsonl"}).status_code == 403
    assert viewer_client.get(reverse("admin:audit_auditevent_verify")).status_code == 403
    assert not AuditEvent.objects.filter(action="audit.export").exists()
