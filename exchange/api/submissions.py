"""The member API for bulk submissions: stream a file to storage, read its status and its errors.

A raw upload (text/csv, application/x-ndjson) is never parsed by DRF nor held in memory: the body
is read in blocks from the WSGI stream straight into a file. A multipart upload's `file` part goes
through Django's upload handlers (a large one to a temporary file, never whole in memory) and is
then stored the same way (see exchange/bulk/ for what happens next).
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiRequest, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from audit.actions import Action
from core.problems import ApiError, Malformed, PayloadTooLarge, problem_response, unknown_fields_message
from exchange import services
from exchange.api.base import Choice, MemberView, field_error
from exchange.bulk import upload as bulk
from exchange.models import Submission, SubmissionError, SubmissionFormat, SubmissionStatus
from members.limits import quota_refused
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


class SubmissionOutput(serializers.Serializer):
    """A bulk file: its progress and counts. `processed` = rows read so far; `error` says why a
    `failed` file stopped and `error_code` names it (null otherwise)."""

    id = serializers.UUIDField()
    status = Choice(choices=SubmissionStatus.choices)
    format = Choice(choices=SubmissionFormat.choices)
    size = serializers.IntegerField(min_value=0, help_text="bytes")
    total = serializers.IntegerField(min_value=0, help_text="data rows: an upper-bound estimate until completed")
    accepted = serializers.IntegerField(min_value=0)
    rejected = serializers.IntegerField(min_value=0)
    processed = serializers.IntegerField(min_value=0)
    error = serializers.SerializerMethodField()
    error_code = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_error(self, submission: Submission) -> str | None:
        return submission.error if submission.status == SubmissionStatus.FAILED else None

    def get_error_code(self, submission: Submission) -> str | None:
        """`too_many_errors`, `member_suspended`, `malformed_request` or `processing_failed`."""
        if submission.status != SubmissionStatus.FAILED:
            return None
        return submission.error_code or "processing_failed"


class SubmissionCreated(serializers.Serializer):
    """The submission that holds the file: follow its `id` (or the Location header)."""

    id = serializers.UUIDField()
    status = Choice(choices=SubmissionStatus.choices)
    duplicate = serializers.BooleanField(help_text="the same file was submitted before: this is that submission")


class SubmissionUpload(serializers.Serializer):
    """The file as a multipart/form-data part named `file`."""

    file = serializers.FileField(
        help_text="CSV or JSON Lines in UTF-8: the part's Content-Type (text/csv, application/x-ndjson) "
        "or else its file name (.csv, .jsonl, .ndjson) says which"
    )


class RowError(serializers.Serializer):
    line = serializers.IntegerField(min_value=1, help_text="the file's line (1 is a CSV file's header row)")
    field = serializers.CharField(allow_null=True, help_text="the field at fault, null for the whole row")
    message = serializers.CharField()


class RowErrors(serializers.Serializer):
    """Every rejected row of a submission (the JSON form of the JSON Lines answer)."""

    results = RowError(many=True)


RAW_BODY = {"type": "string", "format": "binary"}


class UploadSchema(AutoSchema):
    """The upload's request body: the multipart form in `content`, where client generators take it,
    and the raw bodies under `x-raw-bodies`, so that a generator that supports only some media
    types (openapi-python-client takes neither text/csv nor application/x-ndjson) warns of none;
    and the 202's Location header."""

    def _get_request_body(self, direction="request"):
        body = super()._get_request_body(direction)
        if body is not None:
            body["description"] = (
                "The file as the `file` part of a multipart/form-data body, or as the raw body with "
                "Content-Type text/csv or application/x-ndjson (see x-raw-bodies)."
            )
            body["x-raw-bodies"] = {media_type: {"schema": RAW_BODY} for media_type in bulk.MEDIA_TYPES}
        return body

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        accepted = (operation or {}).get("responses", {}).get("202")
        if accepted is not None:
            location = {"description": "the submission's URL", "schema": {"type": "string"}}
            accepted["headers"] = {"Location": location}
        return operation


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
    fmt = bulk.MEDIA_TYPES.get(media_type.strip().lower())
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


def _part_format(upload) -> str:
    """A multipart file's format: its part's Content-Type, else its file name's extension."""
    media_type = (upload.content_type or "").partition(";")[0].strip().lower()
    fmt = bulk.MEDIA_TYPES.get(media_type) or bulk.EXTENSIONS.get(PurePath(upload.name or "").suffix.lower())
    if fmt is None:
        raise ApiError(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the file part as text/csv or application/x-ndjson, or name it .csv, .jsonl or .ndjson.",
        )
    charset = upload.charset or "utf-8"
    if isinstance(charset, bytes):  # Django's multipart parser keeps header parameters as bytes
        charset = charset.decode("latin-1")
    if charset.strip('"').lower() not in ("utf-8", "utf8"):
        raise ApiError(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Files must be encoded in UTF-8."
        )
    return fmt


def _multipart_file(request):
    """The one `file` part of a multipart body, or 400/422 saying what is wrong with the form."""
    try:
        names, files = set(request.data), request.FILES
    except ParseError:
        raise Malformed("The multipart/form-data body is not well formed.") from None
    unknown = names - {"file"}
    if unknown:
        raise field_error(None, unknown_fields_message(unknown, ["file"]))
    uploads = files.getlist("file")
    if not uploads:
        raise field_error("file", "must be a file part" if "file" in names else "is required")
    if len(uploads) > 1:
        raise field_error("file", "must be one file part, not several")
    return uploads[0]


def _deny(caller: services.Caller, action: str, why: str, **details) -> None:
    services.audit_denied(caller, action, why, object_type="submission", **details)


def submission_get(caller: services.Caller, submission_id: Any, action: str) -> Submission:
    """One of the caller's submissions; another member's is 'not found' (audited as denied)."""
    return services.owned_or_404(
        caller, Submission.objects.all(), submission_id, action=action, object_type="submission"
    )


class SubmissionListCreateView(MemberView):
    required_scope = Scope.SUBMIT
    audit_name = "submissions"
    # DRF's multipart parser goes through Django's upload handlers: a large part to a temporary file.
    parser_classes = [CsvUpload, NdjsonUpload, MultiPartParser]
    schema = UploadSchema()

    @extend_schema(
        summary="List your bulk submissions, newest first",
        description="Errors: 403 `scope_required` without the `submit` scope.",
        responses=SubmissionOutput(many=True),
    )
    def get(self, request):
        page, respond = self.paginate(Submission.objects.filter(member=request.user), SubmissionOutput)
        services.audit_read(self.caller, Action.SUBMISSION_LIST, count=len(page))
        return respond()

    @extend_schema(
        summary="Submit a bulk file of records (CSV or JSON Lines, any size); processed in the background",
        description=(
            "Three ways to send the file, all treated alike (same limits, same duplicate "
            "detection): as the raw body with `Content-Type: text/csv` (a header row of the record "
            "fields, the subject flattened to id_type, id_number, name, country, or blind instead of "
            "id_number for blind subjects; an empty cell means "
            "absent) or `application/x-ndjson` (one record object per line); or as the `file` part "
            "of a `multipart/form-data` body (with a Content-Length), its format from the part's "
            "Content-Type or else its name (.csv, .jsonl, .ndjson). The answer comes at once (202); "
            "poll the submission for its status, then read its errors. Submitting the same file "
            "again answers the first submission (`duplicate`: true) and stores nothing twice. "
            "Errors: 400 `malformed_request` (empty or not UTF-8 text, or a malformed form), 403 "
            "`scope_required`, 413 `payload_too_large`, 415 `unsupported_media_type`, 422 "
            "`validation_failed` (a form without exactly one `file` part, or with other fields), 422 "
            "`raw_identifier_refused` (a CSV with an id_number column on an exchange that takes blind "
            "subjects only)."
        ),
        request={
            "multipart/form-data": OpenApiRequest(
                SubmissionUpload, encoding={"file": {"contentType": ", ".join(bulk.MEDIA_TYPES)}}
            )
        },
        responses={202: SubmissionCreated, 413: OpenApiResponse(description="payload_too_large")},
    )
    def post(self, request):
        caller = self.caller
        limit = settings.EXCHANGE_MAX_UPLOAD_BYTES
        multipart = (request.content_type or "").partition(";")[0].strip().lower() == "multipart/form-data"
        fmt = None if multipart else _media_format(request)
        part = None
        try:
            # Refused before the body is read when its announced size alone is too much (the
            # queue is checked once the file is known: resending a queued file is no more bytes).
            bulk.queue_check(None, int(request.META.get("CONTENT_LENGTH") or 0))
            if multipart:
                part = _multipart_file(request)
                fmt, read = _part_format(part), part.read
            else:
                read = _body_reader(request)
            try:
                stored = bulk.upload_store(read, fmt=fmt, limit=limit)
            except bulk.UploadTooLarge:
                _deny(caller, Action.SUBMISSION_CREATE, "payload_too_large", limit=limit)
                raise PayloadTooLarge(f"The file is larger than {limit} bytes; split it into smaller files.") from None
            except bulk.FileRejected as exc:
                _deny(caller, Action.SUBMISSION_CREATE, exc.code)
                if exc.code == "raw_identifier_refused":
                    raise ApiError(422, exc.code, exc.message) from None
                raise Malformed(exc.message) from None
            finally:
                if part is not None:
                    part.close()  # a temporary file holding raw identifiers goes at once
            submission, created = bulk.submission_create(
                member=caller.member, actor=caller.actor, fmt=fmt, stored=stored
            )
        except bulk.QueueFull as exc:
            # Aggregated as every quota refusal: one event per member and minute, with the count.
            quota_refused(caller.member, action=Action.SUBMISSION_CREATE, quota="queued_bytes")
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

    @extend_schema(
        summary="One of your bulk submissions: status and counts",
        description="Errors: 404 `not_found` (also for another member's submission).",
        responses=SubmissionOutput,
    )
    def get(self, request, submission_id):
        submission = submission_get(self.caller, submission_id, Action.SUBMISSION_READ)
        services.audit_read(self.caller, Action.SUBMISSION_READ, object_type="submission", object_id=submission.pk)
        return Response(SubmissionOutput(submission).data)


class SubmissionErrorsView(MemberView):
    required_scope = Scope.SUBMIT
    audit_name = "submission_errors"
    # JSON Lines unless JSON is asked for (Accept: application/json, or ?format=json).
    renderer_classes = [NdjsonRenderer, JSONRenderer]

    @extend_schema(
        operation_id="submissions_errors",
        summary="The rejected rows of a submission",
        description=(
            "One `{line, field, message}` per rejected row, in file order: as JSON Lines "
            "(`application/x-ndjson`, the default, streamed), or as one JSON document "
            '`{"results": [...]}` with `Accept: application/json` or `?format=json`. Messages '
            "never quote the file's content. Errors: 404 `not_found` (also for another member's "
            "submission), 406 `not_acceptable` (an Accept header allowing neither type)."
        ),
        parameters=[
            OpenApiParameter(
                "format",
                str,
                enum=["jsonl", "json"],
                description="the answer's form, instead of an Accept header: jsonl (the default) or json",
            )
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR, description="one JSON object {line, field, message} per line"
            ),
            (200, "application/json"): RowErrors,
        },
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
        errors = ({"line": line, "field": field or None, "message": message} for line, field, message in rows)
        if request.accepted_renderer.format == "json":
            # At most EXCHANGE_MAX_ROW_ERRORS + 1 rows: a file stops there.
            return Response({"results": list(errors)}, headers={"Cache-Control": "no-store"})
        lines = (json.dumps(error, ensure_ascii=False) + "\n" for error in errors)
        response = StreamingHttpResponse(lines, content_type="application/x-ndjson; charset=utf-8")
        response["Cache-Control"] = "no-store"
        return response
