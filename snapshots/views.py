"""Snapshot and restore endpoints, the snapshot index and the jobs.

Every snapshot and restore is a Job run by the worker. By default the call
waits for the job and answers its result; with `Prefer: respond-async` it
answers 202 at once with the job's URL. What can be checked before the job
starts (the volume, the service, the snapshot ids) is checked here, so a bad
request answers 404 and nothing is touched.
"""

import time

from django.db import transaction
from django.http import JsonResponse
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from corestore_project.api import ApiError, Conflict, NotFound, error_body
from snapshots import jobs, resource_ops, serializers, volume_ops
from snapshots.models import Job, Snapshot

# Callers that wait get an answer before gunicorn's one-hour request timeout:
# past this, the job goes on and the answer is 202 with its URL.
WAIT_LIMIT = 3300
POLL_INTERVAL = 0.25

FAILED_STATUS = {
    "not_found": status.HTTP_404_NOT_FOUND,
    "conflict": status.HTTP_409_CONFLICT,
    "engine_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
}


def wants_async(request) -> bool:
    prefer = request.META.get("HTTP_PREFER", "")
    return any(
        part.strip().lower() == "respond-async"
        for item in prefer.split(",")
        for part in item.split(";")[:1]
    )


def accepted(job: Job) -> Response:
    body = serializers.job_body(job)
    return Response(
        {"job": body, "url": body["url"]},
        status=status.HTTP_202_ACCEPTED,
        headers={"Location": body["url"], "Preference-Applied": "respond-async"},
    )


def answer(request, job: Job):
    """202 at once for async callers; otherwise wait and answer the outcome."""
    if wants_async(request):
        return accepted(job)

    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status == Job.Status.SUCCEEDED:
            return Response(job.result, status=status.HTTP_200_OK)
        if job.status == Job.Status.FAILED:
            body = error_body(job.error_code or "job_failed", job.error)
            body["error"]["job"] = serializers.job_url(job)
            return JsonResponse(body, status=FAILED_STATUS.get(job.error_code, 500))
        time.sleep(POLL_INTERVAL)
    return accepted(job)


def ensure_no_restore_running(kind: str, target: str, restoring: bool) -> None:
    """A restore runs alone on its target; snapshots may run side by side."""
    active = Job.objects.filter(target=target, status__in=Job.ACTIVE)
    if restoring:
        active = active.filter(kind__in=(kind, kind.replace("restore", "snapshot")))
    else:
        active = active.filter(kind=kind.replace("snapshot", "restore"))
    if active.exists():
        raise Conflict(f"{target!r} has a restore or snapshot job in progress")


def start(kind: str, target: str, service_id: str, **params) -> Job:
    with transaction.atomic():
        job = jobs.create(kind, target, service_id, **params)
        jobs.enqueue(job)
    return job


def default_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


class VolumeSnapshotView(APIView):
    def post(self, request):
        data = validated(serializers.VolumeSnapshotRequest, request)
        name = data["name"]
        service_id = volume_ops.volume_service_id(name)
        if service_id is None:
            raise NotFound(f"no volume named {name!r}")
        ensure_no_restore_running(Job.Kind.SNAPSHOT_VOLUME, name, restoring=False)

        job = start(
            Job.Kind.SNAPSHOT_VOLUME,
            name,
            service_id,
            snapshotName=data.get("snapshotName") or default_name(name),
            tags=data["tags"],
        )
        return answer(request, job)


class VolumeRestoreView(APIView):
    def post(self, request):
        data = validated(serializers.VolumeRestoreRequest, request)
        name, snapshot_id = data["name"], data["snapshotId"]
        service_id = volume_ops.volume_service_id(name)
        if service_id is None:
            raise NotFound(f"no volume named {name!r}")
        snapshot = Snapshot.objects.filter(
            snapshot_id=snapshot_id, capability=Snapshot.Capability.VOLUME
        ).first()
        if snapshot is None or snapshot.resource_name != name:
            raise NotFound(f"no snapshot {snapshot_id!r} of volume {name!r}")
        ensure_no_restore_running(Job.Kind.RESTORE_VOLUME, name, restoring=True)

        job = start(Job.Kind.RESTORE_VOLUME, name, service_id, snapshotId=snapshot_id)
        return answer(request, job)


class ResourceSnapshotView(APIView):
    def post(self, request):
        data = validated(serializers.ResourceSnapshotRequest, request)
        service_id = data["serviceId"]
        resources = resource_ops.service_resources(service_id)
        if resources is None:
            raise NotFound(f"no service {service_id!r}")
        if not resources:
            raise NotFound(f"service {service_id!r} has no database or bucket")
        ensure_no_restore_running(
            Job.Kind.SNAPSHOT_RESOURCES, service_id, restoring=False
        )

        job = start(
            Job.Kind.SNAPSHOT_RESOURCES,
            service_id,
            service_id,
            snapshotName=data.get("snapshotName") or default_name("snapshot"),
            tags=data["tags"],
        )
        return answer(request, job)


class ResourceRestoreView(APIView):
    def post(self, request):
        data = validated(serializers.ResourceRestoreRequest, request)
        service_id = data["serviceId"]
        resources = resource_ops.service_resources(service_id)
        if resources is None:
            raise NotFound(f"no service {service_id!r}")

        ids = []
        for reference in data["snapshots"]:
            snapshot = resource_ops.find_service_snapshot(
                service_id, reference["snapshotId"]
            )
            if snapshot is None or snapshot.capability not in resources:
                raise NotFound(
                    f"no snapshot {reference['snapshotId']!r} of service {service_id!r}"
                )
            ids.append(snapshot.snapshot_id)
        if len(ids) != len(set(ids)):
            raise ApiError("invalid", "a snapshot is listed twice", 400, "snapshots")
        ensure_no_restore_running(Job.Kind.RESTORE_RESOURCES, service_id, True)

        job = start(Job.Kind.RESTORE_RESOURCES, service_id, service_id, snapshotIds=ids)
        return answer(request, job)


class SnapshotListView(APIView):
    FILTERS = {
        "serviceId": "service_id",
        "capability": "capability",
        "resourceName": "resource_name",
        "snapshotName": "snapshot_name",
    }

    def get(self, request):
        snapshots = Snapshot.objects.all()
        for param, field in self.FILTERS.items():
            value = request.query_params.get(param)
            if value:
                snapshots = snapshots.filter(**{field: value})
        volume = request.query_params.get("volume") or request.query_params.get("name")
        if volume:
            snapshots = snapshots.filter(
                capability=Snapshot.Capability.VOLUME, resource_name=volume
            )
        return Response({"snapshots": [snap.as_api() for snap in snapshots]})


class JobListView(APIView):
    def get(self, request):
        found = Job.objects.all()
        for param, field in (
            ("status", "status"),
            ("kind", "kind"),
            ("target", "target"),
            ("serviceId", "service_id"),
        ):
            value = request.query_params.get(param)
            if value:
                found = found.filter(**{field: value})
        limit = min(int_param(request, "limit", 100), 1000)
        return Response({"jobs": [serializers.job_body(job) for job in found[:limit]]})


class JobDetailView(APIView):
    def get(self, request, job_id):
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            raise NotFound(f"no job {job_id}")
        return Response(serializers.job_body(job, with_log=True))


def validated(serializer_class, request) -> dict:
    if not isinstance(request.data, dict):
        raise ApiError("invalid", "expected a JSON object")
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def int_param(request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()):
        raise ApiError("invalid", f"{name} must be a positive integer", 400, name)
    return int(value)
