from django.contrib import admin
from django.template.defaultfilters import filesizeformat

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
        "progress",
        "duration",
        "attempts",
    )
    list_filter = ("status", "kind")
    date_hierarchy = "created_at"
    search_fields = ("target", "service_id", "id")
    readonly_fields = [field.name for field in Job._meta.fields]
    actions = [view_job_logs]

    @admin.display(description="progress")
    def progress(self, job):
        if job.bytes_total:
            return (
                f"{filesizeformat(job.bytes_done)} of {filesizeformat(job.bytes_total)}"
            )
        return filesizeformat(job.bytes_done) if job.bytes_done else "-"

    @admin.display(description="duration")
    def duration(self, job):
        if not job.started_at or not job.finished_at:
            return "-"
        return f"{(job.finished_at - job.started_at).total_seconds():.1f} s"

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
        "original",
        "stored",
        "short_id",
    )
    list_filter = ("capability",)
    date_hierarchy = "created_at"
    search_fields = ("snapshot_id", "resource_name", "service_id", "snapshot_name")
    readonly_fields = [field.name for field in Snapshot._meta.fields]

    @admin.display(description="original size", ordering="original_size")
    def original(self, snapshot):
        return filesizeformat(snapshot.original_size)

    @admin.display(description="stored size", ordering="stored_size")
    def stored(self, snapshot):
        return filesizeformat(snapshot.stored_size)

    @admin.display(description="snapshot ID", ordering="snapshot_id")
    def short_id(self, snapshot):
        return snapshot.snapshot_id[:12]

    # The archive holds the snapshot; deleting the index row would not free it.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
