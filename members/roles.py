"""Staff roles of the admin console, as auth groups: what each role may see and do.

The roles are defined here, created by the migration members/0002_staff_roles and kept in step
after every later `migrate` (a new model's view permission reaches the auditor without a new
migration). Superusers are for set-up only; day-to-day staff belong to exactly one role.
"""

from __future__ import annotations

from typing import Any

OPERATOR = "Operator"
COMPLIANCE = "Compliance officer"
AUDITOR = "Auditor"
ROLES = (OPERATOR, COMPLIANCE, AUDITOR)

# Permissions that belong to no model's add/change/delete/view: (app, model, codename, name).
REVEAL_PERMISSION = "exchange.reveal_personal_data"
DASHBOARD_PERMISSION = "exchange.view_dashboard"
CUSTOM_PERMISSIONS = (
    ("exchange", "record", "reveal_personal_data", "Can reveal encrypted personal data (audited)"),
    ("exchange", "record", "view_dashboard", "Can view the operations dashboard"),
)

# The apps whose every model the auditor may view.
AUDITED_APPS = ("members", "exchange", "audit")

_EXCHANGE_DATA = ("record", "recordversion", "consent", "inquiry", "dispute")

_OPERATOR = [
    ("members", "member", ("view", "add", "change")),  # onboard, suspend, reactivate, issue keys
    ("members", "apikey", ("view", "change")),  # revoke
    ("exchange", "dispute", ("view", "add", "change")),  # open (staff) and resolve
    ("exchange", "record", ("view", "change")),  # change = withdraw through the service
    ("exchange", "recordversion", ("view",)),
    ("exchange", "consent", ("view",)),
    ("exchange", "inquiry", ("view",)),
]
_COMPLIANCE = [
    ("audit", "auditevent", ("view", "export")),  # export = audit.export_auditevent
    ("audit", "checkpoint", ("view",)),
    ("members", "member", ("view",)),
    ("members", "apikey", ("view",)),
    *[("exchange", model, ("view",)) for model in _EXCHANGE_DATA],
    ("exchange", "evidencerequest", ("view", "add")),  # spot checks: open evidence requests
    ("exchange", "compliancealert", ("view", "change")),  # change = close once reviewed
]


def _role_specs(apps: Any) -> dict[str, list[tuple[str, str, str]]]:
    """(app, model, codename) of every permission of each role."""

    def expand(entries):
        return [(app, model, f"{action}_{model}") for app, model, actions in entries for action in actions]

    every_view = [
        (config.label, model._meta.model_name, f"view_{model._meta.model_name}")
        for label in AUDITED_APPS
        for config in [apps.get_app_config(label)]
        for model in config.get_models()
    ]
    dashboard = ("exchange", "record", "view_dashboard")
    return {
        OPERATOR: [*expand(_OPERATOR), dashboard],
        COMPLIANCE: [*expand(_COMPLIANCE), dashboard, ("exchange", "record", "reveal_personal_data")],
        AUDITOR: [*every_view, dashboard],
    }


def _permission_name(apps: Any, app: str, model: str, codename: str) -> str:
    for c_app, c_model, c_codename, name in CUSTOM_PERMISSIONS:
        if (c_app, c_model, c_codename) == (app, model, codename):
            return name
    if codename == f"export_{model}":
        return "Can download audit exports and run chain verification"
    action = codename.removesuffix(f"_{model}")
    try:
        label = apps.get_model(app, model)._meta.verbose_name
    except LookupError:  # a model newer than the migration state syncing the roles (post_migrate renames it)
        label = model
    return f"Can {action} {label}"


def roles_sync(apps: Any, using: str = "default") -> None:
    """Create the role groups and the permissions they need (get_or_create: on a fresh database
    the migration runs before Django creates content types and permissions), and set each
    group's permissions to exactly its role's."""
    content_type_model = apps.get_model("contenttypes", "ContentType")
    permission_model = apps.get_model("auth", "Permission")
    group_model = apps.get_model("auth", "Group")
    content_types: dict[tuple[str, str], Any] = {}
    for role, specs in _role_specs(apps).items():
        permissions = []
        for app, model, codename in specs:
            if (app, model) not in content_types:
                content_types[app, model], _ = content_type_model.objects.db_manager(using).get_or_create(
                    app_label=app, model=model
                )
            permission, _ = permission_model.objects.db_manager(using).get_or_create(
                content_type=content_types[app, model],
                codename=codename,
                defaults={"name": _permission_name(apps, app, model, codename)[:255]},
            )
            permissions.append(permission)
        group, _ = group_model.objects.db_manager(using).get_or_create(name=role)
        group.permissions.set(permissions)


def roles_remove(apps: Any, using: str = "default") -> None:
    """Undo roles_sync: the groups and the custom permissions go (built-in permissions stay)."""
    apps.get_model("auth", "Group").objects.db_manager(using).filter(name__in=ROLES).delete()
    permission_model = apps.get_model("auth", "Permission")
    for app, model, codename, _name in CUSTOM_PERMISSIONS:
        permission_model.objects.db_manager(using).filter(
            content_type__app_label=app, content_type__model=model, codename=codename
        ).delete()
