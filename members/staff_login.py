"""Staff log-in protection: django-axes locks an account or address out after repeated failures
(settings: AXES_*); each log-in, each failure and each lock-out also goes into the audit log.

Audited from auth's signals because the log-in flow is Django's, not a service of ours. The typed
user name is recorded only when it names an existing account, so a mistyped secret (or a
borrower's identifier pasted into the wrong box) never reaches the log.
"""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db import transaction
from django.dispatch import receiver

from audit.actions import Action
from audit.actors import staff_actor
from audit.models import Outcome
from audit.services import audit_write


class StaffLockoutBackend(AxesStandaloneBackend):
    """Axes' lock-out check for every log-in that comes with a request (the admin's form does).

    Without a request there is no address to count failures by and nothing to lock out (the test
    client's login(), a shell); axes would raise, this passes the call on to the next backend.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def _known_username(credentials: dict) -> str:
    username = credentials.get(get_user_model().USERNAME_FIELD) or credentials.get("username")
    if isinstance(username, str) and get_user_model()._default_manager.filter(username=username).exists():
        return username
    return ""


def _audit(action: str, credentials: dict, **details) -> None:
    username = _known_username(credentials or {})
    with transaction.atomic():
        audit_write(
            action=action,
            actor=staff_actor(username),
            outcome=Outcome.DENIED,
            object_type="user" if username else "",
            details={"known_user": bool(username), **details},
        )


@receiver(user_login_failed, dispatch_uid="members.audit_login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs) -> None:
    _audit(Action.STAFF_LOGIN_FAILED, credentials)


@receiver(user_locked_out, dispatch_uid="members.audit_locked_out")
def audit_locked_out(sender, request, username, ip_address, **kwargs) -> None:
    _audit(Action.STAFF_LOCKED_OUT, {"username": username})


@receiver(user_logged_in, dispatch_uid="members.audit_logged_in")
def audit_logged_in(sender, request, user, **kwargs) -> None:
    with transaction.atomic():
        audit_write(
            action=Action.STAFF_LOGIN, actor=staff_actor(user.get_username()), object_type="user", object_id=user.pk
        )
