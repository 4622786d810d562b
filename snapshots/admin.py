from django.contrib import admin

from corestore_project.admin_actions import view_job_logs
from snapshots.models import Job, Snapshot


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "kind",
        "target",
        "status",
        "phase",
        "bytes_done",
        "bytes_total",
        "attempts",
        "finished_at",
    )
    list_filter = ("status", "kind")
    search_fields = ("target", "service_id", "id")
    readonly_fields = [field.name for field in Job._meta.fields]
    actions = [view_job_logs]

    # Jobs are a record of what ran: operators read them, the worker writes.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "capability",
        "resource_name",
        "service_id",
        "snapshot_name",
        "original_size",
        "stored_size",
        "snapshot_id",
    )
    list_filter = ("capability",)
    search_fields = ("snapshot_id", "resource_name", "service_id", "snapshot_name")
    readonly_fields = [field.name for field in Snapshot._meta.fields]

    # The archive holds the snapshot; deleting the index row would not free it.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
