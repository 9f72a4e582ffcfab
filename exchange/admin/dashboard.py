"""The console's dashboard: what the exchange holds and how it is used, as server-rendered charts.

Staff with `exchange.view_dashboard` (every role) only; each view is audited. Aggregates only:
borrowers appear as truncated subject tokens, never by anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count
from django.db.models.functions import TruncDate, TruncWeek
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from audit.actions import Action
from audit.actors import staff_actor
from audit.services import audit_write
from exchange.admin.charts import PALETTE, columns_against_levels, horizontal_bars, stacked_columns
from exchange.admin.console import audit_refusal
from exchange.alerts import volume_picture
from exchange.models import (
    AlertStatus,
    ComplianceAlert,
    Dispute,
    DisputeStatus,
    Inquiry,
    Product,
    Record,
    RecordStatus,
    RecordVersion,
)
from members.roles import DASHBOARD_PERMISSION

WEEKS = 12
DAYS = 30
TOP = 10
TOKEN_CHARS = 12


@dataclass
class Borrower:
    token: str
    members: int
    inquiries: int


def _as_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def _weekly(rows, key: str, names: list[str], weeks: list[date]) -> dict[str, list[int]]:
    index = {week: i for i, week in enumerate(weeks)}
    series = {name: [0] * len(weeks) for name in names}
    for row in rows:
        i = index.get(_as_date(row["week"]))
        if i is not None and row[key] in series:
            series[row[key]][i] += row["n"]
    return {name: values for name, values in series.items() if any(values)} or {names[0]: [0] * len(weeks)}


def _labelled(series: dict[str, list[int]], choices) -> dict[str, list[int]]:
    """The same series, named by their labels ("Written off", not "written_off")."""
    return {choices(name).label: values for name, values in series.items()}


def dashboard_data(now: datetime | None = None) -> dict:
    """Every figure of the dashboard; a fixed handful of aggregate queries."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    this_week = today - timedelta(days=today.weekday())
    weeks = [this_week - timedelta(weeks=n) for n in range(WEEKS - 1, -1, -1)]
    versions = (
        RecordVersion.objects.filter(created_at__gte=datetime.combine(weeks[0], datetime.min.time(), tzinfo=now.tzinfo))
        .annotate(week=TruncWeek("created_at"))
        .order_by()
    )
    by_status = list(versions.values("week", "status").annotate(n=Count("id")))
    by_product = list(versions.values("week", "product").annotate(n=Count("id")))
    week_labels = [f"{week:%d %b}" for week in weeks]

    days = [today - timedelta(days=n) for n in range(DAYS - 1, -1, -1)]
    per_day = dict(
        Inquiry.objects.filter(created_at__gte=now - timedelta(days=DAYS))
        .annotate(day=TruncDate("created_at"))
        .order_by()
        .values_list("day")
        .annotate(n=Count("id"))
    )
    inquiries_per_day = [per_day.get(day, 0) for day in days]

    current = dict(Record.objects.order_by().values_list("status").annotate(n=Count("id")))
    open_disputes = Dispute.objects.filter(status=DisputeStatus.OPEN)
    members_by_records = list(
        Record.objects.order_by().values_list("member__code").annotate(n=Count("id")).order_by("-n")[:TOP]
    )
    members_by_inquiries = list(
        Inquiry.objects.filter(created_at__gte=now - timedelta(days=DAYS))
        .order_by()
        .values_list("member__code")
        .annotate(n=Count("id"))
        .order_by("-n")[:TOP]
    )
    borrowers = [
        Borrower(token=row["subject_token"][:TOKEN_CHARS] + "…", members=row["members"], inquiries=row["n"])
        for row in Inquiry.objects.filter(created_at__gte=now - timedelta(days=7))
        .order_by()
        .values("subject_token")
        .annotate(members=Count("member", distinct=True), n=Count("id"))
        .filter(members__gt=1)
        .order_by("-members", "-n", "subject_token")[:TOP]
    ]
    return {
        "generated_at": now,
        "records_total": sum(current.values()),
        "records_open": sum(current.get(s, 0) for s in (RecordStatus.DELINQUENT, RecordStatus.RESTRUCTURED)),
        "inquiries_30d": sum(inquiries_per_day),
        "disputes_open": open_disputes.count(),
        "disputes_overdue": open_disputes.filter(due_at__lte=now).count(),
        "chart_status": stacked_columns(
            week_labels,
            _labelled(_weekly(by_status, "status", RecordStatus.values, weeks), RecordStatus),
            title="Record versions furnished per week, by status",
            label_every=2,
        ),
        "chart_product": stacked_columns(
            week_labels,
            _labelled(_weekly(by_product, "product", Product.values, weeks), Product),
            title="Record versions furnished per week, by product",
            label_every=2,
        ),
        "chart_current": horizontal_bars(
            [(status.label, current.get(status, 0)) for status in RecordStatus], title="Current records by status"
        ),
        "chart_inquiries": stacked_columns(
            [f"{day:%d %b}" for day in days],
            {"inquiries": inquiries_per_day},
            title=f"Inquiries per day, last {DAYS} days",
            label_every=5,
        ),
        "chart_members_records": horizontal_bars(members_by_records, title="Current records by furnishing member"),
        "chart_members_inquiries": horizontal_bars(
            members_by_inquiries, title=f"Inquiries by member, last {DAYS} days", color=PALETTE[1]
        ),
        "borrowers": borrowers,
        **_compliance(now),
    }


def _compliance(now: datetime) -> dict:
    """Open compliance alerts, and each busiest member's distinct subjects per hour over the last
    24 hours against its own 7-day baseline (exchange/alerts.py)."""
    open_alerts = ComplianceAlert.objects.filter(status=AlertStatus.OPEN)
    return {
        "alerts_open": open_alerts.count(),
        "alerts_latest": list(open_alerts.select_related("member").order_by("-window_start", "kind")[:5]),
        "volume_charts": [
            (
                picture.code,
                columns_against_levels(
                    [f"{hour:%H}h" for hour in picture.hours],
                    picture.subjects,
                    [("7-day median", picture.median), ("alert threshold", picture.threshold)],
                    title=f"{picture.code}: distinct subjects per hour, last 24 hours, against its 7-day baseline",
                ),
            )
            for picture in volume_picture(now)
        ],
    }


def _audit(request: HttpRequest) -> None:
    with transaction.atomic():
        audit_write(action=Action.DASHBOARD_VIEW, actor=staff_actor(request.user.get_username()))


@never_cache
def dashboard_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    if not (user.is_active and user.is_staff and user.has_perm(DASHBOARD_PERMISSION)):
        audit_refusal(request, Action.DASHBOARD_VIEW, "permission")
        raise PermissionDenied("The dashboard needs one of the console's roles.")
    context = {**admin.site.each_context(request), "title": "Dashboard", **dashboard_data()}
    _audit(request)
    return TemplateResponse(request, "admin/exchange/dashboard.html", context)


def dashboard_urls() -> list[URLPattern]:
    """Mounted at /admin/dashboard/ by config/urls.py, above the admin site's own URLs."""
    return [path("", dashboard_view, name="console_dashboard")]
