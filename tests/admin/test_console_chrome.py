"""The console is the exchange's own: its name, refusals that say why, human labels, a member's keys."""

from __future__ import annotations

from members.models import ApiKey


def test_the_console_carries_the_exchanges_name(operator):
    page = operator.get("/admin/").content.decode()
    assert "Credit-information exchange" in page and "Django administration" not in page
    assert "<title>Console | Exchange console</title>" in page


def test_a_refused_page_is_inside_the_console_and_says_why(auditor, data):
    response = auditor.get(f"/admin/exchange/record/{data.record.pk}/withdraw/")
    assert response.status_code == 403
    page = response.content.decode()
    assert 'id="site-name"' in page and "Credit-information exchange" in page
    assert "Withdrawing a record needs the operator&#x27;s role." in page
    assert "audrey" in page and "Auditor" in page


def test_a_page_no_role_allows_is_refused_in_the_console_too(no_role):
    response = no_role.get("/admin/dashboard/")
    assert response.status_code == 403
    assert "The dashboard needs one of the console" in response.content.decode()


def test_labels_read_as_words(operator, data):
    page = operator.get(f"/admin/exchange/record/{data.record.pk}/change/").content.decode()
    assert "Resident ID (CN)" in page and "Cn Ric" not in page
    assert "ID type" in page


def test_a_members_page_lists_its_keys_and_links_to_them(operator, bank_a):
    key = ApiKey.objects.filter(member=bank_a.member).first()
    page = operator.get(f"/admin/members/member/{bank_a.member.pk}/change/").content.decode()
    assert f"/admin/members/apikey/{key.pk}/change/" in page
    assert key.prefix in page and "submit, query" in page
    assert f"?member__id__exact={bank_a.member.pk}" in page
    assert key.key_hash not in page
