"""Volumes in the admin: read-only, since Docker owns their life cycle.

Changing or deleting a row here would leave the Docker daemon and the data
folder behind; operators remove volumes with `docker volume rm`. The one
exception is releasing mounts that Docker will never unmount.
"""

import logging

from django.contrib import admin, messages
from django.db.models import Count
from django.template.defaultfilters import filesizeformat

from corestore_project.admin_actions import snapshot_volumes_now
from volumes.driver import directory_size, write_transaction
from volumes.models import Volume, VolumeMount

logger = logging.getLogger(__name__)


@admin.action(description="Release all mounts of the selected volumes")
def release_mounts(modeladmin, request, queryset):
    """Forget every mount ID that holds the selected volumes.

    A dockerd that crashed loses its containers and never sends their
    Unmount, so the IDs would keep the volume from being removed forever.
    Only for volumes no running container uses.
    """
    for volume in queryset:
        with write_transaction():
            mounts = VolumeMount.objects.select_for_update().filter(volume=volume)
            released = sorted(mounts.values_list("mount_id", flat=True))
            mounts.delete()
        logger.warning(
            "admin %s released %d mount(s) of volume %s: %s",
            request.user,
            len(released),
            volume.name,
            ", ".join(released) or "-",
        )
        modeladmin.message_user(
            request,
            f"volume {volume}: released {len(released)} mount(s)",
            messages.SUCCESS,
        )


class ReadOnlyAdminMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class VolumeMountInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = VolumeMount
    fields = ("mount_id", "mounted_at")
    readonly_fields = fields
    extra = 0
    verbose_name = "active mount"


@admin.register(Volume)
class VolumeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "service_id",
        "created_at",
        "active_mounts",
        "size",
        "mountpoint",
    )
    list_filter = ("created_at",)
    search_fields = ("name", "service_id")
    fields = (
        "name",
        "service_id",
        "created_at",
        "mountpoint",
        "size",
        "active_mounts",
        "options",
        "labels",
    )
    readonly_fields = fields
    inlines = [VolumeMountInline]
    actions = [snapshot_volumes_now, release_mounts]
    # Sizes walk each volume's files: keep pages short.
    list_per_page = 50

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(mount_count=Count("mounts"))

    @admin.display(description="active mounts", ordering="mount_count")
    def active_mounts(self, volume):
        return volume.mount_count

    @admin.display(description="size")
    def size(self, volume):
        return filesizeformat(directory_size(volume.mountpoint))


@admin.register(VolumeMount)
class VolumeMountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every container holding a volume: one row per Docker mount ID."""

    list_display = ("volume", "short_mount_id", "mounted_at")
    list_filter = ("mounted_at",)
    search_fields = ("volume__name", "mount_id")
    list_select_related = ("volume",)
    fields = ("volume", "mount_id", "mounted_at")
    readonly_fields = fields

    @admin.display(description="mount ID", ordering="mount_id")
    def short_mount_id(self, mount):
        return mount.mount_id[:12]
