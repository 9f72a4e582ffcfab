"""The member API for bulk submissions: stream a file to storage, read its status and its errors.

The upload is never parsed by DRF nor held in memory: the body is read in blocks from the WSGI
stream straight into a file (see exchange/bulk/ for what happens next).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from audit.actions import Action
from core.problems import ApiError, Malformed, NotFound, PayloadTooLarge, problem_response
from exchange import services
from exchange.api.base import MemberView
from exchange.bulk import upload
from exchange.models import Submission, SubmissionError, SubmissionStatus
from members.models import Scope


class _Unparsed(BaseParser):
    """Declares an accepted media type without reading the body (the view streams it itself)."""

    def parse(self, stream, media_type=None, parser_context=None):  # pragma: no cover - never called
        raise Malformed("The body is read by the view.")


class CsvUpload(_Unparsed):
    media_type = "text/csv"


class NdjsonUpload(_Unparsed):
    media_type = "application/x-ndjson"


class NdjsonRenderer(BaseRenderer):
    media_type = "application/x-ndjson"
    format = "jsonl"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        # Only problem bodies come through here; the errors themselves are streamed.
        return json.dumps(data).encode()


class SubmissionOutput(serializers.ModelSerializer):
    processed = serializers.IntegerField(read_only=True)
    error = serializers.SerializerMethodField()
    error_code = serializers.SerializerMethodField()

    class Meta:
        model = Submission
        fields = [
            "id",
            "status",
            "format",
            "size",
            "total",
            "accepted",
            "rejected",
            "processed",
            "error",
            "error_code",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_error(self, submission: Submission) -> str | None:
        return submission.error if submission.status == SubmissionStatus.FAILED else None

    def get_error_code(self, submission: Submission) -> str | None:
        """`too_many_errors`, `member_suspended`, `malformed_request` or `processing_failed`."""
        if submission.status != SubmissionStatus.FAILED:
            return None
        return submission.error_code or "processing_failed"


SubmissionCreated = inline_serializer(
    "SubmissionCreated",
    {
        "id": serializers.UUIDField(),
        "status": serializers.ChoiceField(choices=SubmissionStatus.choices),
        "duplicate": serializers.BooleanField(help_text="the same file was submitted before: this is that submission"),
    },
)


def _body_reader(request):
    """A read(n) over the request body. With Content-Length, Django's bounded stream; without it
    (chunked transfer encoding, de-chunked by the WSGI server) the raw WSGI input."""
    django_request = request._request
    if django_request.META.get("CONTENT_LENGTH"):
        return django_request.read
    if "chunked" in django_request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return django_request.META["wsgi.input"].read
    return lambda size: b""


def _media_format(request) -> str:
    media_type, _, params = (request.content_type or "").partition(";")
    fmt = upload.MEDIA_TYPES.get(media_type.strip().lower())
    if fmt is None:
        raise ApiError(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the file as text/csv or application/x-ndjson.",
        )
    charset = dict(part.strip().lower().split("=", 1) for part in params.split(";") if "=" in part).get(
        "charset", "utf-8"
    )
    if charset.strip('"') not in ("utf-8", "utf8"):
        raise ApiError(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Files must be encoded in UTF-8."
        )
    return fmt


def _deny(caller: services.Caller, action: str, why: str, **details) -> None:
    services.audit_denied(caller, action, why, object_type="submission", **details)


def submission_get(caller: services.Caller, submission_id: Any, action: str) -> Submission:
    """One of the caller's submissions; another member's is 'not found' (audited as denied)."""
    try:
        submission_uuid = uuid.UUID(str(submission_id))
    except ValueError:
        raise NotFound() from None
    submission = Submission.objects.filter(pk=submission_uuid, member=caller.member).first()
    if submission is None:
        _deny(caller, action, "not_found", submission=str(submission_uuid))
        raise NotFound()
    return submission


class SubmissionListCreateView(MemberView):
    required_scope = Scope.SUBMIT
    audit_name = "submissions"
    parser_classes = [CsvUpload, NdjsonUpload]

    @extend_schema(summary="List your bulk submissions, newest first", responses=SubmissionOutput(many=True))
    def get(self, request):
        page, respond = self.paginate(Submission.objects.filter(member=request.user), SubmissionOutput)
        services.audit_read(self.caller, Action.SUBMISSION_LIST, count=len(page))
        return respond()

    @extend_schema(
        summary="Submit a bulk file of records (CSV or JSON Lines, any size); processed in the background",
        description=(
            "The body is the file: `text/csv` with a header row of the record fields (the subject "
            "flattened to id_type, id_number, name, country; an empty cell means absent) or "
            "`application/x-ndjson` with one record object per line. Submitting the same file again "
            "answers the first submission and stores nothing twice."
        ),
        request={"text/csv": bytes, "application/x-ndjson": bytes},
        responses={202: SubmissionCreated, 413: OpenApiResponse(description="payload_too_large")},
    )
    def post(self, request):
        caller = self.caller
        fmt = _media_format(request)
        limit = settings.EXCHANGE_MAX_UPLOAD_BYTES
        try:
            # Refused before the body is read when its announced size alone is too much (the
            # queue is checked once the file is known: resending a queued file is no more bytes).
            upload.queue_check(None, int(request.META.get("CONTENT_LENGTH") or 0))
            try:
                stored = upload.upload_store(_body_reader(request), fmt=fmt, limit=limit)
            except upload.UploadTooLarge:
                _deny(caller, Action.SUBMISSION_CREATE, "payload_too_large", limit=limit)
                raise PayloadTooLarge(f"The file is larger than {limit} bytes; split it into smaller files.") from None
            except upload.FileRejected as exc:
                _deny(caller, Action.SUBMISSION_CREATE, "malformed_request")
                raise Malformed(exc.message) from None
            submission, created = upload.submission_create(
                member=caller.member, actor=caller.actor, fmt=fmt, stored=stored
            )
        except upload.QueueFull as exc:
            _deny(caller, Action.SUBMISSION_CREATE, "quota_exceeded", queued=exc.queued, limit=exc.limit)
            return problem_response(
                429,
                "quota_exceeded",
                f"Your files waiting to be processed would exceed {exc.limit} bytes; "
                "retry once earlier ones are processed.",
                **{"Retry-After": "60"},
            )
        return Response(
            {"id": str(submission.pk), "status": submission.status, "duplicate": not created},
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/v1/submissions/{submission.pk}"},
        )


class SubmissionDetailView(MemberView):
    required_scope = Scope.SUBMIT
    audit_name = "submission"

    @extend_schema(summary="One of your bulk submissions: status and counts", responses=SubmissionOutput)
    def get(self, request, submission_id):
        submission = submission_get(self.caller, submission_id, Action.SUBMISSION_READ)
        services.audit_read(self.caller, Action.SUBMISSION_READ, object_type="submission", object_id=submission.pk)
        return Response(SubmissionOutput(submission).data)


class SubmissionErrorsView(MemberView):
    required_scope = Scope.SUBMIT
    audit_name = "submission_errors"
    renderer_classes = [JSONRenderer, NdjsonRenderer]

    @extend_schema(
        summary="The rejected rows of a submission, as JSON Lines {line, field, message}",
        parameters=[OpenApiParameter("Accept", str, OpenApiParameter.HEADER, required=False)],
        responses={(200, "application/x-ndjson"): OpenApiResponse(description="one JSON object per line")},
    )
    def get(self, request, submission_id):
        submission = submission_get(self.caller, submission_id, Action.SUBMISSION_ERRORS)
        services.audit_read(
            self.caller,
            Action.SUBMISSION_ERRORS,
            object_type="submission",
            object_id=submission.pk,
            rejected=submission.rejected,
        )
        rows = (
            SubmissionError.objects.filter(submission=submission)
            .order_by("id")
            .values_list("line", "field", "message")
            .iterator(chunk_size=2000)
        )
        lines = (
            json.dumps({"line": line, "field": field or None, "message": message}, ensure_ascii=False) + "\n"
            for line, field, message in rows
        )
        response = StreamingHttpResponse(lines, content_type="application/x-ndjson; charset=utf-8")
        response["Cache-Control"] = "no-store"
        return response
