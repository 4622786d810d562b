"""Jobs (every snapshot and restore) and the index of snapshots in the archive.

The archive is the truth about what a snapshot holds; the Snapshot rows index
it with what restic 0.14 cannot store in a snapshot (sizes) and what the API
filters on. Other apps' rows are referred to by their public names (serviceId,
volume name), so a snapshot outlives the service or volume it was taken of.
"""

import uuid

from django.db import models
from django.utils import timezone


class Job(models.Model):
    class Kind(models.TextChoices):
        SNAPSHOT_VOLUME = "snapshot_volume"
        RESTORE_VOLUME = "restore_volume"
        SNAPSHOT_RESOURCES = "snapshot_resources"
        RESTORE_RESOURCES = "restore_resources"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    target = models.CharField(
        max_length=255, db_index=True, help_text="volume name or serviceId"
    )
    service_id = models.CharField(max_length=255, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    phase = models.CharField(max_length=64, blank=True, default="")
    bytes_done = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error = models.TextField(blank=True, default="")
    log = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    owner = models.CharField(
        max_length=255, blank=True, default="", help_text="host:pid running it"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "target", "status"])]

    def __str__(self):
        return f"{self.kind} {self.target} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)


class Snapshot(models.Model):
    class Capability(models.TextChoices):
        VOLUME = "volume"
        DATABASE = "database"
        OBJECTSTORAGE = "objectstorage"

    snapshot_id = models.CharField(max_length=64, unique=True)
    capability = models.CharField(max_length=32, choices=Capability.choices)
    resource_name = models.CharField(max_length=255, db_index=True)
    service_id = models.CharField(max_length=255, blank=True, default="", db_index=True)
    snapshot_name = models.CharField(max_length=255, blank=True, default="")
    original_size = models.BigIntegerField(default=0)
    stored_size = models.BigIntegerField(default=0)
    created_at = models.DateTimeField()
    tags = models.JSONField(default=dict, blank=True)
    # Where the data sits inside the restic snapshot: the tree's top folder for
    # a volume, the stream's file name for a dump.
    archive_path = models.CharField(max_length=255)
    job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.capability} {self.resource_name} {self.snapshot_id[:8]}"

    def as_api(self) -> dict:
        return {
            "capability": self.capability,
            "resourceName": self.resource_name,
            "snapshotId": self.snapshot_id,
            "originalSize": self.original_size,
            "storedSize": self.stored_size,
            "createdAt": int(self.created_at.timestamp() * 1000),
            "tags": self.tags,
        }
