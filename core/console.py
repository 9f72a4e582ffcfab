"""What every console page about exchange data shares, whichever app it belongs to."""

from __future__ import annotations


class ReadOnlyMixin:
    """Nobody adds, edits or deletes from this page, superusers included: changes go through the
    services (each audited), and history is never edited. For ModelAdmin and inline classes."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
