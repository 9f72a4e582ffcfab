"""Cursor pagination answering `{"results": [...], "next": url|null}`."""

from __future__ import annotations

from django.conf import settings
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
        self.model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        from django.core.exceptions import ValidationError
        from rest_framework.exceptions import NotFound

        from core.problems import Malformed

        invalid = Malformed("The cursor is not valid; use the `next` link as given.")
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise invalid from None
        if cursor is not None and cursor.position is not None:
            # A cursor is not signed: a made-up position must not reach the query (a 500 there).
            field = self.model._meta.get_field(self.ordering[0].lstrip("-"))
            try:
                field.run_validators(field.to_python(cursor.position))
            except (ValidationError, ValueError, TypeError):
                raise invalid from None
        return cursor

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
