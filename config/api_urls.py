"""The member API, version 1."""

from django.urls import path

from exchange.api import consents, disputes, evidence, inquiries, oprf, records, submissions
from members.api import MeView

urlpatterns = [
    path("me", MeView.as_view(), name="me"),
    path("records", records.RecordListCreateView.as_view(), name="records"),
    path("records/<str:record_id>", records.RecordDetailView.as_view(), name="record"),
    path("records/<str:record_id>/history", records.RecordHistoryView.as_view(), name="record-history"),
    path("records/<str:record_id>/withdraw", records.RecordWithdrawView.as_view(), name="record-withdraw"),
    path("consents", consents.ConsentListCreateView.as_view(), name="consents"),
    path("consents/<str:consent_id>", consents.ConsentDetailView.as_view(), name="consent"),
    path("consents/<str:consent_id>/revoke", consents.ConsentRevokeView.as_view(), name="consent-revoke"),
    path("inquiries", inquiries.InquiryListCreateView.as_view(), name="inquiries"),
    path("inquiries/<str:inquiry_id>", inquiries.InquiryDetailView.as_view(), name="inquiry"),
    path("disputes", disputes.DisputeListCreateView.as_view(), name="disputes"),
    path("disputes/<str:dispute_id>", disputes.DisputeDetailView.as_view(), name="dispute"),
    path("disputes/<str:dispute_id>/resolve", disputes.DisputeResolveView.as_view(), name="dispute-resolve"),
    path("evidence-requests", evidence.EvidenceRequestListView.as_view(), name="evidence-requests"),
    path(
        "evidence-requests/<str:evidence_request_id>",
        evidence.EvidenceRequestDetailView.as_view(),
        name="evidence-request",
    ),
    path(
        "evidence-requests/<str:evidence_request_id>/evidence",
        evidence.EvidenceAnswerView.as_view(),
        name="evidence-request-answer",
    ),
    path("submissions", submissions.SubmissionListCreateView.as_view(), name="submissions"),
    path("submissions/<str:submission_id>", submissions.SubmissionDetailView.as_view(), name="submission"),
    path(
        "submissions/<str:submission_id>/errors",
        submissions.SubmissionErrorsView.as_view(),
        name="submission-errors",
    ),
    path("oprf/key", oprf.OprfKeyView.as_view(), name="oprf-key"),
    path("oprf/evaluate", oprf.OprfEvaluateView.as_view(), name="oprf-evaluate"),
]
