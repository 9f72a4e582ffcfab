"""The console end to end in headless Chromium: each role logs in through the real form, a
compliance officer looks a borrower up and reveals a name (then finds the audit event), an
operator opens and resolves a dispute, an auditor can change nothing.

Then every console page, as each role: a screenshot of each under
var/screenshots/<database>/<role>/ (or EXCHANGE_SCREENSHOTS_DIR), and axe-core's accessibility
rules run on each; a serious or critical violation fails the test.

Uses Debian's `chromium` (scripts/test.sh installs it when it runs as root) driven by Playwright;
Playwright's own browser download is never used. axe-core is the npm package that
scripts/install-axe.sh puts in var/node/ (scripts/test.sh runs it).
"""

from __future__ import annotations

import os
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections
from django.urls import reverse

from exchange.models import ComplianceAlert, Dispute, Record
from members.roles import AUDITOR, COMPLIANCE, OPERATOR
from tests.admin.conftest import BORROWER_NAME, PASSWORD, make_staff
from tests.factories import ric

CHROMIUM = os.environ.get("EXCHANGE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

AXE = Path(django_settings.BASE_DIR) / "var" / "node" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"no Chromium at {CHROMIUM}: install Debian's 'chromium' package (scripts/test.sh does, as root)",
    ),
]


@pytest.fixture
def screenshots(capsys) -> Path:
    from django.db import connection

    base = Path(os.environ.get("EXCHANGE_SCREENSHOTS_DIR") or django_settings.BASE_DIR / "var" / "screenshots")
    folder = base / connection.vendor
    folder.mkdir(parents=True, exist_ok=True)
    with capsys.disabled():
        print(f"\n[console screenshots] {folder.resolve()}")
    return folder


@pytest.fixture
def browser(monkeypatch, settings):
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # between page steps are plain synchronous code all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # Each live-server request closes its database connection when it ends, so none is left open
    # in a server thread when the test database is dropped.
    monkeypatch.setitem(connections.settings[DEFAULT_DB_ALIAS], "CONN_MAX_AGE", 0)
    # The live server speaks plain HTTP.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    # Inside Playwright's sync API the ORM runs in another context and so opens a connection of
    # its own: close the outer one first and the inner one before leaving, so that no connection
    # is left idle when the test database is dropped.
    connections.close_all()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
            connections.close_all()


class Console:
    """One staff member's browser session."""

    def __init__(self, browser, base_url: str, username: str):
        self.context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        self.username = username
        page = self.page
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")
        assert page.locator("#user-tools").inner_text().upper().find(username.upper()) >= 0

    def status_of_post(self, path: str, data: dict) -> int:
        """A POST the page would not offer, sent with the session and a valid CSRF token."""
        token = next(c["value"] for c in self.context.cookies() if c["name"] == "csrftoken")
        response = self.page.request.post(path, form={"csrfmiddlewaretoken": token, **data}, max_redirects=0)
        return response.status

    def close(self) -> None:
        self.context.close()


def test_the_console_in_a_real_browser(live_server, browser, screenshots, data, bank_a):
    make_staff("carl", COMPLIANCE)
    make_staff("olivia", OPERATOR)
    make_staff("audrey", AUDITOR)
    url = live_server.url

    # A compliance officer: dashboard, borrower's report, reveal a name and find the audit event.
    carl = Console(browser, url, "carl")
    page = carl.page
    page.click("#console-links >> text=Dashboard")
    page.wait_for_selector("svg.chart")
    # Six charts, and one of distinct subjects per hour against its baseline for the one member that queried.
    assert page.locator("svg.chart").count() == 7
    assert page.locator("#disputes-overdue").inner_text() == "1"
    page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)

    page.goto("/admin/")
    page.click("#console-links >> text=Borrower's report")
    page.select_option("select[name=id_type]", "CN_RIC")
    page.fill("input[name=id_number]", ric(1))
    page.click("input[type=submit][value='Show the report']")
    page.wait_for_selector("text=Bank B")
    report = page.content()
    assert "Bank A" in report and ric(1) not in report
    page.screenshot(path=str(screenshots / "borrower_report.png"), full_page=True)

    page.goto(f"/admin/exchange/record/{data.record.pk}/change/")
    assert BORROWER_NAME not in page.content()
    page.click("text=Reveal name")
    page.click("input[type=submit][value^=Reveal]")
    assert page.locator("#revealed-value").inner_text() == BORROWER_NAME
    page.goto("/admin/audit/auditevent/?action__exact=admin.reveal")
    row = page.locator("#result_list tbody tr").first
    assert "admin.reveal" in row.inner_text() and "staff:carl" in row.inner_text()
    assert BORROWER_NAME not in page.content()
    carl.close()

    # An operator: the dispute queue, then open a dispute from a record and resolve it.
    olivia = Console(browser, url, "olivia")
    page = olivia.page
    page.goto("/admin/exchange/dispute/")
    first = page.locator("#result_list tbody tr").first
    assert first.locator(".dispute-overdue").count() == 1  # the overdue one leads the queue
    page.screenshot(path=str(screenshots / "dispute_queue.png"), full_page=True)
    page.goto(f"/admin/exchange/record/{data.record.pk}/change/")
    assert page.locator("text=Reveal name").count() == 0  # operators cannot reveal
    page.click("text=Open a dispute")
    page.fill("textarea[name=reason]", "The borrower says this loan was repaid in full.")
    page.click("input[type=submit][value='Open the dispute']")
    page.wait_for_selector("text=Dispute opened")
    page.click(".object-tools >> text=Resolve")
    page.check("input[name=outcome][value=upheld]")
    page.fill("textarea[name=note]", "Checked with the furnisher's ledger.")
    page.click("input[type=submit][value='Resolve the dispute']")
    page.wait_for_selector("text=Dispute resolved: upheld.")
    resolved = Dispute.objects.get(filed_by_staff="staff:olivia")
    assert (resolved.status, resolved.outcome) == ("resolved", "upheld")
    olivia.close()

    # An auditor: sees everything, changes nothing.
    audrey = Console(browser, url, "audrey")
    page = audrey.page
    for path in ("/admin/members/member/", "/admin/exchange/record/", "/admin/exchange/dispute/"):
        page.goto(path)
        assert page.locator("#result_list").count() == 1
        assert page.locator(".addlink").count() == 0
        assert page.locator("select[name=action]").count() == 0
    page.goto(f"/admin/exchange/record/{data.record.pk}/change/")
    tools = page.locator(".object-tools").inner_text()
    assert "Withdraw" not in tools and "Open a dispute" not in tools and "Reveal" not in tools
    assert page.locator("#content-main input[type=submit]").count() == 0
    member_page = f"/admin/members/member/{bank_a.member.pk}/change/"
    assert audrey.status_of_post(member_page, {"name": "Renamed", "kind": "bank"}) == 403
    assert audrey.status_of_post(f"/admin/exchange/record/{data.record.pk}/withdraw/", {"reason": "x"}) == 403
    assert audrey.status_of_post(f"/admin/exchange/dispute/{data.dispute.pk}/resolve/", {"outcome": "upheld"}) == 403
    audrey.close()
    assert Record.objects.get(pk=data.record.pk).withdrawn_at is None
    assert Dispute.objects.get(pk=data.dispute.pk).status == "open"
    assert (screenshots / "dashboard.png").stat().st_size > 10_000
    assert (screenshots / "borrower_report.png").stat().st_size > 10_000


def console_pages(data) -> list[tuple[str, str]]:
    """(name, path) of every console page: home, dashboard, report, each registered model's list and
    one object's page, and the pages of the console's own actions."""
    pages = [
        ("home", "/admin/"),
        ("dashboard", reverse("console_dashboard")),
        ("borrower_report", reverse("borrower_report")),
        ("compliance", reverse("console_compliance")),
    ]
    for model in sorted(admin.site._registry, key=lambda model: model._meta.label):
        opts = model._meta
        name = f"{opts.app_label}_{opts.model_name}"
        pages.append((f"{name}_list", reverse(f"admin:{name}_changelist")))
        first = model._default_manager.first()
        if first is not None:
            pages.append((f"{name}_page", reverse(f"admin:{name}_change", args=[first.pk])))
    record, dispute = data.record.pk, data.dispute.pk
    pages += [
        ("record_reveal_name", reverse("admin:exchange_record_reveal", args=[record, "name"])),
        ("record_withdraw", reverse("admin:exchange_record_withdraw", args=[record])),
        ("record_open_dispute", reverse("admin:exchange_record_open_dispute", args=[record])),
        ("dispute_resolve", reverse("admin:exchange_dispute_resolve", args=[dispute])),
        ("audit_verify", reverse("admin:audit_auditevent_verify")),
        ("audit_export", reverse("admin:audit_auditevent_export")),
    ]
    alert = ComplianceAlert.objects.filter(status="open").first()
    if alert is not None:
        pages.append(("compliance_alert_close", reverse("admin:exchange_compliancealert_close", args=[alert.pk])))
    return pages


def axe_violations(page) -> list[str]:
    # Evaluated through the DevTools protocol, not added as a <script>: the console's
    # Content-Security-Policy (rightly) refuses inline scripts, and the test must not relax it.
    page.evaluate(AXE.read_text())
    found = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        f"{v['impact']} {v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in found
        if v["impact"] in BLOCKING
    ]


def csp_violations(page) -> list[str]:
    """What the page's Content-Security-Policy refused, as the browser reports it (filled as the
    page runs)."""
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(f"CSP: {message.text[:200]}") if "Content Security Policy" in message.text else None
        ),
    )
    return refused


def test_the_api_docs_work_under_their_content_security_policy(live_server, browser):
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    refused = csp_violations(page)
    response = page.goto("/api/v1/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # Swagger UI ran (its set-up script is a file, not inline), fetched the schema and drew it.
    page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
    assert "Credit-information exchange API" in page.locator(".swagger-ui .info .title").inner_text()
    page.wait_for_selector(".opblock-tag", timeout=15_000)
    assert page.locator(".opblock").count() > 10
    assert not refused, refused
    context.close()


def test_every_console_page_as_every_role_is_shown_and_accessible(live_server, browser, screenshots, data, tmp_path):
    assert AXE.is_file(), f"axe-core is not installed at {AXE}: run scripts/install-axe.sh (scripts/test.sh does)"
    # The demo's two years of history, so that lists are long and charts have something to show.
    call_command("seed_demo", "--env-file", str(tmp_path / "demo.env"), stdout=StringIO())
    User.objects.create_superuser("ada", "ada@example.invalid", PASSWORD)
    make_staff("olivia", OPERATOR)
    make_staff("carl", COMPLIANCE)
    make_staff("audrey", AUDITOR)
    pages = console_pages(data)
    problems: list[str] = []
    for role, username in (("admin", "ada"), ("operator", "olivia"), ("compliance", "carl"), ("auditor", "audrey")):
        folder = screenshots / role
        folder.mkdir(exist_ok=True)
        console = Console(browser, live_server.url, username)
        page = console.page
        refused = csp_violations(page)
        for name, path in pages:
            response = page.goto(path)
            status = response.status if response else 0
            if status not in (200, 403):
                problems.append(f"{role} {name}: HTTP {status}")
                continue
            if status == 403:
                # A refusal is a page of the console too, saying why.
                assert page.locator("#site-name").count() == 1 and page.locator(".refused .errornote").count() == 1
            page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
            problems += [f"{role} {name}: {v}" for v in axe_violations(page)]
            if name == "borrower_report" and status == 200:
                page.select_option("select[name=id_type]", "CN_RIC")
                page.fill("input[name=id_number]", ric(1))
                page.click("input[type=submit][value='Show the report']")
                page.wait_for_load_state()
                page.screenshot(path=str(folder / "borrower_report_result.png"), full_page=True)
                problems += [f"{role} borrower_report_result: {v}" for v in axe_violations(page)]
            problems += [f"{role} {name}: {v}" for v in refused]
            refused.clear()
        console.close()
    assert not problems, "\n".join(problems)
    assert (screenshots / "auditor" / "record_withdraw.png").is_file()
    # The demo fills the compliance pages: alerts, and evidence requests in every state.
    assert (screenshots / "compliance" / "exchange_compliancealert_page.png").is_file()
    assert (screenshots / "compliance" / "compliance_alert_close.png").is_file()
