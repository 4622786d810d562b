"""Docker volumes managed by the plugin, and the mounts that hold them.

A volume is a directory `<data>/volumes/<name>/data` plus one row here. Docker
never replays Mount after a plugin restart, so every active mount is a row of
its own (one per mount ID) and the reference count is simply their number.
"""

from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone


def volumes_root() -> Path:
    return settings.DATA_DIR / "volumes"


def volume_dir(name: str) -> Path:
    """The volume's own folder; its files live in the `data` folder inside."""
    return volumes_root() / name


def volume_mountpoint(name: str) -> Path:
    return volume_dir(name) / "data"


class Volume(models.Model):
    name = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    options = models.JSONField(
        default=dict, blank=True, help_text="the --opt values it was created with"
    )
    service_id = models.CharField(
        max_length=255,
        blank=True,
        default="",
        db_index=True,
        help_text="the provisioned service owning it, if any",
    )
    labels = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def mountpoint(self) -> Path:
        return volume_mountpoint(self.name)


class VolumeMount(models.Model):
    """One active Mount call, identified by the ID Docker sent with it."""

    volume = models.ForeignKey(Volume, on_delete=models.PROTECT, related_name="mounts")
    mount_id = models.CharField(max_length=255)
    mounted_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["mounted_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["volume", "mount_id"], name="volumemount_unique_id"
            )
        ]

    def __str__(self):
        return f"{self.volume.name} ({self.mount_id[:12]})"
