"""Members and API keys in the admin console. Every change goes through members.services, so it
is audited like the same change made from the command line."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from members.models import ApiKey, Member, MemberStatus, Scope
from members.services import api_key_issue, api_key_revoke, member_create, member_set_status


def staff_actor(request) -> str:
    return f"staff:{request.user.get_username()}"


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "kind", "status", "created_at")
    list_filter = ("status", "kind")
    search_fields = ("code", "name")
    readonly_fields = ("status", "created_at", "updated_at")
    actions = ("issue_key", "suspend", "reactivate")

    def get_readonly_fields(self, request, obj=None):
        # The code is the member's stable identity: fixed once created.
        return (*self.readonly_fields, "code") if obj else self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return False  # members are suspended, never deleted: their records and audit trail stay

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name", "kind", "updated_at"])
            from audit.services import audit_write

            audit_write(
                action="member.update",
                actor=staff_actor(request),
                member_code=obj.code,
                object_type="member",
                object_id=obj.pk,
                details={"fields": sorted(form.changed_data)},
            )
            return
        try:
            member, _key, full = member_create(code=obj.code, name=obj.name, kind=obj.kind, actor=staff_actor(request))
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            return
        obj.pk = member.pk
        self.message_user(
            request,
            f"Member {member.code} created. Its API key, shown only now: {full}",
            messages.WARNING,
        )

    @admin.action(description="Issue a new API key (both scopes) and show it once")
    def issue_key(self, request, queryset):
        for member in queryset:
            _key, full = api_key_issue(member=member, scopes=[Scope.SUBMIT, Scope.QUERY], actor=staff_actor(request))
            self.message_user(request, f"New key for {member.code}, shown only now: {full}", messages.WARNING)

    @admin.action(description="Suspend the selected members")
    def suspend(self, request, queryset):
        for member in queryset:
            member_set_status(member=member, status=MemberStatus.SUSPENDED, actor=staff_actor(request))

    @admin.action(description="Reactivate the selected members")
    def reactivate(self, request, queryset):
        for member in queryset:
            member_set_status(member=member, status=MemberStatus.ACTIVE, actor=staff_actor(request))


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
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

    @admin.action(description="Revoke the selected keys now")
    def revoke(self, request, queryset):
        for key in queryset:
            api_key_revoke(key=key, actor=staff_actor(request))
        self.message_user(request, f"{queryset.count()} key(s) revoked.")
