"""Health probes and URL-level error handlers."""

from __future__ import annotations

from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import page_not_found, permission_denied, server_error

from core.problems import problem_response


@never_cache
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:  # noqa: BLE001 - any failure means not ready
        return problem_response(503, "unavailable", "The database is unreachable.", **{"Retry-After": "5"})
    return JsonResponse({"status": "ready"})


@csrf_exempt  # the API's catch-all: an unknown POST is a problem+json 404, not a CSRF page
def handler404(request, exception=None):
    if request.path.startswith("/api/"):
        return problem_response(404, "not_found", "No such resource.")
    return page_not_found(request, exception)


def handler500(request):
    if request.path.startswith("/api/"):
        return problem_response(500, "internal_error", "An internal error occurred; nothing was stored.")
    return server_error(request)


def handler400(request, exception=None):
    if request.path.startswith("/api/"):
        return problem_response(400, "malformed_request", "The request is malformed.")
    return HttpResponse("Bad request", status=400, content_type="text/plain")


def handler403(request, exception=None):
    """A refused console page inside the console's own chrome (templates/403.html), saying why."""
    if request.path.startswith("/admin/") and getattr(request, "user", None) and request.user.is_staff:
        from django.contrib import admin
        from django.template.response import TemplateResponse

        context = {**admin.site.each_context(request), "title": "Not allowed", "reason": str(exception or "")}
        context["roles"] = sorted(request.user.groups.values_list("name", flat=True))
        return TemplateResponse(request, "403.html", context, status=403).render()
    return permission_denied(request, exception)
