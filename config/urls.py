"""URL configuration: the API, the admin console, health probes and API docs."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core import views as core_views
from exchange.admin.compliance import compliance_urls
from exchange.admin.dashboard import dashboard_urls
from exchange.admin.reports import borrower_report_urls

# The console is the exchange's own, in its header, its titles and its home page.
admin.site.site_header = "Credit-information exchange"
admin.site.site_title = "Exchange console"
admin.site.index_title = "Console"
# The home page lists every model: a sidebar repeating it on each page only narrows the lists.
admin.site.enable_nav_sidebar = False
admin.site.site_url = None  # no public site behind the console: no "View site" link

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("api/v1/schema", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path(
        "api/v1/docs",
        # The split view serves Swagger UI's set-up script as a file: no inline script (CSP).
        SpectacularSwaggerSplitView.as_view(url_name="schema", authentication_classes=[], permission_classes=[]),
        name="docs",
    ),
    path("api/v1/", include("config.api_urls")),
    path("admin/borrower-report/", include(borrower_report_urls())),
    path("admin/dashboard/", include(dashboard_urls())),
    path("admin/compliance/", include(compliance_urls())),
    path("admin/", admin.site.urls),
    # Anything else under /api/ is a problem+json 404, in DEBUG too.
    re_path(r"^api/", core_views.handler404),
]

handler400 = "core.views.handler400"
handler403 = "core.views.handler403"
handler404 = "core.views.handler404"
handler500 = "core.views.handler500"
