"""Request bodies of the snapshot endpoints, and the job representation."""

import re

from django.urls import reverse
from rest_framework import serializers

from snapshots.common import RESERVED_TAGS
from snapshots.models import Job


def epoch_ms(value):
    return int(value.timestamp() * 1000) if value else None


# Tags become restic tags "key=value", and restic splits tag lists on commas:
# a comma (or "=") in a key would add tags of its own choosing, such as
# another job's, so keys are plain words and values carry no separators.
TAG_KEY = re.compile(r"[A-Za-z0-9._-]{1,64}")
TAG_VALUE = re.compile(r"[^,\x00-\x1f\x7f]{0,256}")


class TagsField(serializers.Field):
    """Caller tags: {"key": "value"} or ["key=value", "flag"]; stored as a dict."""

    def to_internal_value(self, data):
        if isinstance(data, list):
            pairs = {}
            for item in data:
                if not isinstance(item, str) or not item:
                    raise serializers.ValidationError("tags must be strings")
                key, _, value = item.partition("=")
                pairs[key] = value
            data = pairs
        if not isinstance(data, dict):
            raise serializers.ValidationError("expected an object or a list")
        if len(data) > 32:
            raise serializers.ValidationError("at most 32 tags")
        tags = {}
        for key, value in data.items():
            if not isinstance(value, str | int | float | bool):
                raise serializers.ValidationError(
                    f"tag {key!r}: value must be a string"
                )
            if key in RESERVED_TAGS:
                raise serializers.ValidationError(f"tag {key!r} is set by corestore")
            if not TAG_KEY.fullmatch(key):
                raise serializers.ValidationError(
                    f"tag key {key[:80]!r}: 1-64 characters of [A-Za-z0-9._-]"
                )
            if not TAG_VALUE.fullmatch(str(value)):
                raise serializers.ValidationError(
                    f"tag {key!r}: values are at most 256 characters, without "
                    "commas, newlines or control characters"
                )
            tags[key] = str(value)
        return tags

    def to_representation(self, value):
        return value


def snapshot_name_field():
    return serializers.CharField(max_length=200, required=False, allow_blank=True)


class VolumeSnapshotRequest(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    snapshotName = snapshot_name_field()
    tags = TagsField(required=False, default=dict)


class VolumeRestoreRequest(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    snapshotId = serializers.CharField(max_length=64)


class ResourceSnapshotRequest(serializers.Serializer):
    serviceId = serializers.CharField(max_length=255)
    snapshotName = snapshot_name_field()
    tags = TagsField(required=False, default=dict)


class SnapshotReference(serializers.Serializer):
    # Extra fields of the snapshot objects as returned are ignored.
    snapshotId = serializers.CharField(max_length=64)
    capability = serializers.CharField(max_length=32, required=False)
    resourceName = serializers.CharField(max_length=255, required=False)


class ResourceRestoreRequest(serializers.Serializer):
    serviceId = serializers.CharField(max_length=255)
    snapshots = SnapshotReference(many=True, allow_empty=False)


def job_url(job: Job) -> str:
    return reverse("job-detail", kwargs={"job_id": job.pk})


def job_body(job: Job, with_log: bool = False) -> dict:
    body = {
        "id": str(job.pk),
        "url": job_url(job),
        "kind": job.kind,
        "target": job.target,
        "serviceId": job.service_id or None,
        "status": job.status,
        "progress": {
            "phase": job.phase,
            "bytesDone": job.bytes_done,
            "bytesTotal": job.bytes_total,
        },
        "result": job.result,
        "error": (
            {"code": job.error_code, "message": job.error} if job.error_code else None
        ),
        "attempts": job.attempts,
        "createdAt": epoch_ms(job.created_at),
        "startedAt": epoch_ms(job.started_at),
        "finishedAt": epoch_ms(job.finished_at),
    }
    if with_log:
        body["log"] = job.log.splitlines()
    return body
