"""Cursor pagination answering `{"results": [...], "next": url|null}`."""

from __future__ import annotations

from django.conf import settings
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response


class CursorPage(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"

    def get_page_size(self, request):
        self.page_size = settings.EXCHANGE_PAGE_SIZE
        self.max_page_size = settings.EXCHANGE_MAX_PAGE_SIZE
        return super().get_page_size(request)

    def decode_cursor(self, request):
        from rest_framework.exceptions import NotFound

        from core.problems import Malformed

        try:
            return super().decode_cursor(request)
        except NotFound:
            raise Malformed("The cursor is not valid; use the `next` link as given.") from None

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
