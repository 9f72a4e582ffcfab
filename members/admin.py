"""Members and API keys in the admin console. Every change goes through members.services, so it
is audited like the same change made from the command line."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from audit.actors import staff_actor
from audit.console import AuditedPages
from members.limits import MEMBER_FIELDS, member_limits
from members.models import ApiKey, Member, MemberStatus, Scope
from members.services import api_key_issue, api_keys_revoke, member_create, member_set_status, member_update


def members_with_key_use(queryset: QuerySet[Member]) -> QuerySet[Member]:
    """Members annotated with the last use of any of their keys."""
    return queryset.annotate(
        last_key_use=Subquery(
            ApiKey.objects.filter(member=OuterRef("pk"), last_used_at__isnull=False)
            .order_by("-last_used_at")
            .values("last_used_at")[:1]
        ),
    )


def when(moment) -> str:
    # Formatted here: the change page shows a callable's value as it is (list pages would format it).
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT") if moment else "never"


def issued_keys_response(request, model_admin, issued: list[tuple[Member, str, str]], refused: list[Member]):
    """The page showing newly issued keys, each only as age ciphertext for its member's recipient
    (never a plaintext key, and never through the messages framework)."""
    response = TemplateResponse(
        request,
        "admin/members/member/issued_keys.html",
        {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.model._meta,
            "title": "API keys issued",
            "issued": issued,
            "refused": refused,
        },
    )
    response["Cache-Control"] = "no-store"
    return response


@admin.register(Member)
class MemberAdmin(AuditedPages, admin.ModelAdmin):
    audit_search = "text"  # codes and names of institutions
    list_display = ("code", "name", "kind", "status", "last_key_use", "created_at")
    list_filter = ("status", "kind")
    search_fields = ("code", "name")
    readonly_fields = ("status", "last_key_use", "created_at", "updated_at", "api_keys", "limits")
    exclude = MEMBER_FIELDS  # set with `set_member_limits` (audited), shown in `limits`
    actions = ("issue_key", "suspend", "reactivate")

    @admin.display(description="limits in force")
    def limits(self, obj: Member) -> str:
        shown = {name: value for name, value in member_limits(obj).items() if name != "member"}
        return ", ".join(f"{name.replace('_', ' ')}: {value if value else 'none'}" for name, value in shown.items())

    def get_queryset(self, request):
        return members_with_key_use(super().get_queryset(request))

    @admin.display(description="last key use", ordering="last_key_use")
    def last_key_use(self, obj: Member) -> str:
        return when(getattr(obj, "last_key_use", None))

    @admin.display(description="API keys")
    def api_keys(self, obj: Member) -> str:
        """The member's keys (prefixes only: a key is shown once, when issued), each linking to its page."""
        keys = list(obj.api_keys.order_by("-created_at")) if obj.pk else []
        if not keys:
            return "none"
        rows = format_html_join(
            "",
            '<tr><td><a href="{}"><code>{}</code></a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:members_apikey_change", args=[key.pk]),
                    key.prefix,
                    ", ".join(key.scope_list),
                    key.status,
                    when(key.created_at),
                    when(key.expires_at) if key.expires_at else "does not expire",
                    when(key.last_used_at),
                )
                for key in keys
            ),
        )
        every = reverse("admin:members_apikey_changelist") + f"?member__id__exact={obj.pk}"
        return format_html(
            '<table class="member-keys"><thead><tr><th scope="col">prefix</th><th scope="col">scopes</th>'
            '<th scope="col">status</th><th scope="col">issued</th><th scope="col">expires</th>'
            '<th scope="col">last used</th></tr></thead><tbody>{}</tbody></table>'
            '<p><a href="{}">All of its keys in the key list</a> (to revoke one, open it).</p>',
            rows,
            every,
        )

    def get_readonly_fields(self, request, obj=None):
        # The code is the member's stable identity: fixed once created. The key recipient is never
        # a form field: staff who could set it, on a new member or an existing one, could have the
        # member's first or next key sealed to themselves. It is set only by `set_key_recipient`
        # (audited); the change page shows it.
        return (*self.readonly_fields, "code", "key_recipient") if obj else self.readonly_fields

    def get_exclude(self, request, obj=None):
        exclude = tuple(super().get_exclude(request, obj) or ())
        return exclude if obj else (*exclude, "key_recipient")

    def has_delete_permission(self, request, obj=None):
        return False  # members are suspended, never deleted: their records and audit trail stay

    def save_model(self, request, obj, form, change):
        if change:
            try:
                member_update(member=obj, name=obj.name, kind=obj.kind, actor=staff_actor(request.user.get_username()))
            except ValidationError as exc:
                self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            return
        # Created without a recipient and without a key, whatever the request carries: the
        # recipient comes only from `set_key_recipient`, so no staff account alone can have a
        # member's key sealed to itself and read it.
        try:
            member, _key, _sealed = member_create(
                code=obj.code,
                name=obj.name,
                kind=obj.kind,
                key_recipient="",
                issue_key=False,
                actor=staff_actor(request.user.get_username()),
            )
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            return
        obj.pk = member.pk
        obj.key_recipient = ""
        request.member_created = True

    def response_add(self, request, obj, post_url_continue=None):
        if getattr(request, "member_created", False):
            self.message_user(
                request,
                f"Member {obj.code} created without an API key. Its age key recipient is registered with "
                "`manage.py set_key_recipient` (not in the console); then issue its key here.",
                messages.WARNING,
            )
        return super().response_add(request, obj, post_url_continue)

    @admin.action(
        description="Issue a new API key (both scopes), encrypted to the member's recipient", permissions=["change"]
    )
    def issue_key(self, request, queryset):
        issued, refused = [], []
        for member in queryset:
            if not member.key_recipient:
                refused.append(member)  # the plaintext would be on this screen: never
                continue
            key, sealed = api_key_issue(
                member=member, scopes=[Scope.SUBMIT, Scope.QUERY], actor=staff_actor(request.user.get_username())
            )
            issued.append((member, key.prefix, sealed))
        if not issued:
            self.message_user(
                request,
                "No key issued: the console issues keys only to members with a key recipient "
                f"({', '.join(m.code for m in refused)} have none; see `manage.py set_key_recipient`).",
                messages.ERROR,
            )
            return None
        return issued_keys_response(request, self, issued, refused)

    @admin.action(description="Suspend the selected members", permissions=["change"])
    def suspend(self, request, queryset):
        for member in queryset:
            member_set_status(
                member=member, status=MemberStatus.SUSPENDED, actor=staff_actor(request.user.get_username())
            )

    @admin.action(description="Reactivate the selected members", permissions=["change"])
    def reactivate(self, request, queryset):
        for member in queryset:
            member_set_status(member=member, status=MemberStatus.ACTIVE, actor=staff_actor(request.user.get_username()))


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedPages, admin.ModelAdmin):
    audit_search = "text"  # key prefixes and member codes
    list_display = ("prefix", "member", "scopes", "status", "created_at", "expires_at", "last_used_at")
    list_filter = ("member",)
    search_fields = ("prefix", "member__code")
    readonly_fields = ("prefix", "member", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at")
    exclude = ("key_hash",)
    actions = ("revoke",)

    def has_add_permission(self, request):
        return False  # keys are issued from the member page, so the secret is shown once

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected keys now", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = api_keys_revoke(
            key_ids=queryset.values_list("pk", flat=True), actor=staff_actor(request.user.get_username())
        )
        self.message_user(request, f"{len(revoked)} key(s) revoked.")


# --- staff accounts ---------------------------------------------------------------------------
# Django's own pages, with two changes: log-in and joining times are facts, not form fields, and
# groups and permissions are plain multiple selects (the two-pane widget fails accessibility rules).
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class StaffUserAdmin(UserAdmin):
    filter_horizontal = ()
    readonly_fields = ("last_login", "date_joined")


@admin.register(Group)
class StaffGroupAdmin(GroupAdmin):
    filter_horizontal = ()
