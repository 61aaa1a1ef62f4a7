from django.contrib import admin, messages

from exceptions.models import ExceptionEvent, SyncException
from exceptions.services import exceptions_bulk_retry


class EventInline(admin.TabularInline):
    model = ExceptionEvent
    extra = 0
    can_delete = False
    fields = ("at", "action", "actor", "note")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SyncException)
class SyncExceptionAdmin(admin.ModelAdmin):
    """Read-only: the queue is worked in the console; changes go through the services, never a raw edit."""

    list_display = ("title", "kind", "team", "status", "occurrences", "first_seen", "last_seen")
    list_filter = ("status", "team", "kind", "flow")
    search_fields = ("object_ref", "refs__ref")
    show_full_result_count = False
    inlines = [EventInline]
    actions = ["retry_selected"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Retry the selected exceptions (those your team may act on)")
    def retry_selected(self, request, queryset) -> None:
        count = exceptions_bulk_retry(queryset=queryset, actor=request.user)
        self.message_user(request, f"Retrying {count} exception(s).", messages.SUCCESS)
