"""What corestore has provisioned for each workload service.

Only names and states live here: every tenant credential is derived from the
master secret when it is needed (corestore_project/derive.py), never stored.
"""

from django.db import models


class Service(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        # Set before the engines drop anything, so that a provision call racing
        # a deprovision is refused instead of re-creating half of the service.
        DEPROVISIONING = "deprovisioning"

    service_id = models.CharField(max_length=128, unique=True)
    # The name given on the first provision call; the engine-side names are
    # derived from it once and never change afterwards.
    service_name = models.CharField(max_length=128)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.ACTIVE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service_id"]

    def __str__(self):
        return self.service_id


class Resource(models.Model):
    class Capability(models.TextChoices):
        DATABASE = "database"
        OBJECTSTORAGE = "objectstorage"

    class Status(models.TextChoices):
        # The row exists but the engine may not have the tenant yet: the next
        # provision call ensures it again.
        PENDING = "pending"
        READY = "ready"

    service = models.ForeignKey(
        Service, on_delete=models.CASCADE, related_name="resources"
    )
    capability = models.CharField(max_length=16, choices=Capability.choices)
    # The engine-side name: the database name or the bucket name.
    name = models.CharField(max_length=63)
    engine = models.CharField(max_length=16)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING
    )
    # The type of the last engine failure, never its message: engine errors
    # may quote URIs or keys.
    last_error = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service__service_id", "capability"]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "capability"], name="one_resource_per_capability"
            ),
            models.UniqueConstraint(
                fields=["capability", "name"], name="unique_engine_name"
            ),
        ]

    def __str__(self):
        return f"{self.service.service_id}/{self.capability}"

    @property
    def resource_name(self) -> str:
        """The name snapshots use: `db` for the database, `bucket` for S3."""
        return "db" if self.capability == self.Capability.DATABASE else "bucket"
