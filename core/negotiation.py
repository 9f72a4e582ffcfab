"""Content negotiation that lets authentication speak first: a request without a valid key is
401 whatever its Accept header (or `?format=`), never a 406 that answers before the key is checked."""

from __future__ import annotations

from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation


class AuthenticateFirst(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            if request.query_params.get(self.settings.URL_FORMAT_OVERRIDE) == "":
                raise Http404("no such format")  # as any other unknown format (DRF would ignore it)
            return super().select_renderer(request, renderers, format_suffix)
        except (NotAcceptable, Http404):
            # DRF negotiates before it authenticates; on a refusal, run the view's own checks first
            # (once: DRF negotiates again to render the error, and a denial is audited).
            view = (request.parser_context or {}).get("view")
            if view is not None and not getattr(request, "_checked_before_negotiation", False):
                request._checked_before_negotiation = True
                view.perform_authentication(request)
                view.check_permissions(request)
            raise
