"""The member API, version 1."""

from django.urls import path

from exchange import api as exchange_api
from exchange import disputes_api, submissions_api
from members.api import MeView

urlpatterns = [
    path("me", MeView.as_view(), name="me"),
    path("records", exchange_api.RecordListCreateView.as_view(), name="records"),
    path("records/<str:record_id>", exchange_api.RecordDetailView.as_view(), name="record"),
    path("records/<str:record_id>/history", exchange_api.RecordHistoryView.as_view(), name="record-history"),
    path("records/<str:record_id>/withdraw", exchange_api.RecordWithdrawView.as_view(), name="record-withdraw"),
    path("consents", exchange_api.ConsentListCreateView.as_view(), name="consents"),
    path("consents/<str:consent_id>", exchange_api.ConsentDetailView.as_view(), name="consent"),
    path("consents/<str:consent_id>/revoke", exchange_api.ConsentRevokeView.as_view(), name="consent-revoke"),
    path("inquiries", exchange_api.InquiryListCreateView.as_view(), name="inquiries"),
    path("inquiries/<str:inquiry_id>", exchange_api.InquiryDetailView.as_view(), name="inquiry"),
    path("disputes", disputes_api.DisputeListCreateView.as_view(), name="disputes"),
    path("disputes/<str:dispute_id>", disputes_api.DisputeDetailView.as_view(), name="dispute"),
    path("disputes/<str:dispute_id>/resolve", disputes_api.DisputeResolveView.as_view(), name="dispute-resolve"),
    path("submissions", submissions_api.SubmissionListCreateView.as_view(), name="submissions"),
    path("submissions/<str:submission_id>", submissions_api.SubmissionDetailView.as_view(), name="submission"),
    path(
        "submissions/<str:submission_id>/errors",
        submissions_api.SubmissionErrorsView.as_view(),
        name="submission-errors",
    ),
]
