"""Member institutions and their API keys."""

from __future__ import annotations

import uuid

from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from audit.actors import member_actor


class MemberKind(models.TextChoices):
    BANK = "bank", "Bank"
    CONSUMER_FINANCE = "consumer_finance", "Consumer finance"
    MICROLENDER = "microlender", "Microlender"
    FINTECH = "fintech", "Fintech"
    OTHER = "other", "Other"


class MemberStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"


class Scope(models.TextChoices):
    SUBMIT = "submit", "submit"
    QUERY = "query", "query"


member_code_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_-]{1,31}$", "A member code is 2-32 letters, digits, - or _."
)


class Member(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    code = models.CharField(max_length=32, unique=True, validators=[member_code_validator])
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=MemberKind.choices, default=MemberKind.OTHER)
    status = models.CharField(max_length=10, choices=MemberStatus.choices, default=MemberStatus.ACTIVE)
    # The member's age public key: when set, its API keys are delivered only encrypted to it
    # (members/custody.py). Set by `set_key_recipient` or at creation, never edited in the console.
    key_recipient = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # The member's own limits (`set_member_limits`); blank or NULL: the deployment's default
    # (members/limits.py). A quota of 0 means none.
    rate_limit = models.CharField(max_length=32, blank=True, default="", help_text="e.g. 1200/minute")
    inquiries_per_day = models.PositiveIntegerField(null=True, blank=True)
    disputes_per_day = models.PositiveIntegerField(null=True, blank=True)
    oprf_per_day = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=MemberStatus.values), name="member_status_valid"),
            models.CheckConstraint(condition=models.Q(kind__in=MemberKind.values), name="member_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"

    @property
    def is_active(self) -> bool:
        return self.status == MemberStatus.ACTIVE

    # DRF treats request.user as a user object; a member is always an authenticated caller.
    is_authenticated = True
    is_anonymous = False

    @property
    def actor(self) -> str:
        return member_actor(self.code)


class ApiKeyQuerySet(models.QuerySet):
    def usable(self) -> ApiKeyQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    """A member's key. Only its prefix (for lookup) and SHA-256 hash are stored."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="api_keys")
    prefix = models.CharField(max_length=24, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = models.CharField(max_length=32, help_text="Comma-separated: submit, query.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.member.code})"

    @property
    def scope_list(self) -> list[str]:
        return [s for s in self.scopes.split(",") if s]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scope_list

    def is_usable(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= timezone.now():
            return "expired"
        return "active"


class LimitCounter(models.Model):
    """One counting bucket of a limit in the database store (members/limits.py): hits of `key`
    during bucket number `bucket` (time divided by the bucket's width). Written with one upsert per
    hit; rows past `expires` (epoch seconds) are swept away.

    A refusal flood's minute (`first` set: the minute's first refusal, JSON) is a row too, the
    bucket being the minute; it stays until its audit event has committed (members.limits)."""

    pk = models.CompositePrimaryKey("key", "bucket")
    key = models.CharField(max_length=120)
    bucket = models.BigIntegerField()
    count = models.IntegerField(default=0)
    expires = models.BigIntegerField()
    first = models.TextField(null=True, blank=True)  # noqa: DJ001 - NULL: a limit's bucket, not a flood's

    class Meta:
        indexes = [
            models.Index(fields=["expires"], name="limit_counter_expires_idx"),
            # The flood minutes waiting for their event, found without reading the limits' buckets.
            models.Index(fields=["bucket"], name="limit_counter_flood_idx", condition=models.Q(first__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.key}@{self.bucket}={self.count}"
