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
        self.page_size = settings.EXCHANGE_PAGE_SIZE
        self.max_page_size = settings.EXCHANGE_MAX_PAGE_SIZE
        return super().get_page_size(request)

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
