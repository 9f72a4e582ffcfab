"""Cursor pagination answering `{"results": [...], "next": url|null}`."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.utils import timezone
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response


class CursorPage(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"

    def get_page_size(self, request):
        from core.problems import Invalid

        self.page_size = settings.EXCHANGE_PAGE_SIZE
        self.max_page_size = settings.EXCHANGE_MAX_PAGE_SIZE
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        # What the schema says, held: 1 to the maximum, digits only (DRF would quietly clamp or ignore).
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= self.max_page_size):
            message = f"must be a whole number from 1 to {self.max_page_size}"
            raise Invalid([{"index": None, "field": self.page_size_query_param, "message": message}])
        return int(raw)

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model  # decode_cursor checks the cursor's position against it
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        from rest_framework.exceptions import NotFound

        from core.problems import Malformed

        invalid = "The cursor is not valid; use the `next` link as given."
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise Malformed(invalid) from None
        if cursor is not None and cursor.position is not None and not self._position_ok(cursor.position):
            # A crafted position (`p=not-a-date`) would fail in the query, as a 500.
            raise Malformed(invalid)
        return cursor

    def _position_ok(self, position: str) -> bool:
        """The position is a value of the ordering's first field (what DRF itself writes there)."""
        model = getattr(self, "_model", None)
        if model is None or "\x00" in position or len(position) > 200:
            return False
        try:
            field = model._meta.get_field(self.ordering[0].lstrip("-"))
            value = field.to_python(position)
            field.run_validators(value)  # e.g. an integer within the column's range
        except (FieldDoesNotExist, ValidationError, ValueError, TypeError, OverflowError):
            return False
        return not (isinstance(value, datetime) and timezone.is_naive(value))

    def get_paginated_response(self, data):
        return Response({"results": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {"type": "string", "format": "uri", "nullable": True},
            },
        }

    def get_schema_operation_parameters(self, view):
        return page_parameters()


def page_parameters() -> list[dict]:
    """The OpenAPI query parameters of every list: the opaque cursor and a bounded page size."""
    return [
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "description": "Opaque: the `cursor` of the previous page's `next` link, never built by hand.",
            "schema": {"type": "string"},
        },
        {
            "name": "page_size",
            "in": "query",
            "required": False,
            "description": f"Items per page (default {settings.EXCHANGE_PAGE_SIZE}).",
            "schema": {"type": "integer", "minimum": 1, "maximum": settings.EXCHANGE_MAX_PAGE_SIZE},
        },
    ]
