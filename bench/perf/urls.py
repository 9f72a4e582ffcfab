"""The product's URLs plus two bench-only views: the floor (one summary query) and a constant."""

from django.db import connection
from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView

# One indexed aggregate by subject token over the current records: the least any inquiry must do.
FLOOR_SQL = """
SELECT count(*) FILTER (WHERE status IN ('delinquent', 'restructured')),
       count(DISTINCT member_id) FILTER (WHERE status IN ('delinquent', 'restructured')),
       coalesce(max(days_past_due) FILTER (WHERE status IN ('delinquent', 'restructured')), 0),
       coalesce(sum(amount_overdue) FILTER (WHERE status IN ('delinquent', 'restructured')), 0),
       count(*) FILTER (WHERE status = 'settled'),
       count(*) FILTER (WHERE status = 'written_off'),
       max(delinquent_since)
  FROM exchange_record
 WHERE subject_token = %s AND withdrawn_at IS NULL
"""


class BareView(APIView):
    authentication_classes = []
    permission_classes = []
    throttle_classes = []


class FloorView(BareView):
    """POST {"token": ...}: the summary aggregate for one subject token, nothing else."""

    def post(self, request):
        with connection.cursor() as cursor:
            cursor.execute(FLOOR_SQL, [request.data["token"]])
            row = cursor.fetchone()
        open_count, institutions, worst, overdue, settled, written_off, last = row
        return Response(
            {
                "open_delinquencies": open_count,
                "institutions_with_open": institutions,
                "worst_days_past_due": worst,
                "total_amount_overdue": str(overdue),
                "settled_count": settled,
                "written_off_count": written_off,
                "last_delinquent_since": last.isoformat() if last else None,
            }
        )


class ConstantView(BareView):
    def post(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("bench/floor", FloorView.as_view()),
    path("bench/constant", ConstantView.as_view()),
    path("", include("config.urls")),
]
