"""WSGI entry point; refuses to serve if the production secrets are missing or malformed."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

from core.checks import refuse_to_start_without_secrets  # noqa: E402

refuse_to_start_without_secrets()
