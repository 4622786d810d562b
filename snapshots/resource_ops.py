"""Snapshot and restore of a service's database and bucket.

Each resource is dumped into a staging folder (snapshots/dumpers.py: a
mongodump-style directory for the database, objects plus a manifest for the
bucket), and restic archives that folder. Restore goes the other way: restic
restores the folder, and the dumper replaces the resource's contents with it.

Buckets are read and written with the service's own derived key: on the
embedded object engine, object metadata is private to the key that wrote it,
so only the tenant's key sees (and writes back) what the tenant sees.
"""

import logging

from django.conf import settings

from corestore_project import derive
from corestore_project.engines import EngineUnavailable, database_engine
from corestore_project.engines.base import connect_host
from snapshots import archive, common, jobs
from snapshots.models import Job, Snapshot

logger = logging.getLogger(__name__)

RESOURCE_NAMES = {
    Snapshot.Capability.DATABASE: "db",
    Snapshot.Capability.OBJECTSTORAGE: "bucket",
}
# The top folder of a dump inside its restic snapshot.
DUMP_ROOT = {
    Snapshot.Capability.DATABASE: "database",
    Snapshot.Capability.OBJECTSTORAGE: "bucket",
}


def service_resources(service_id: str) -> dict | None:
    """{capability: engine-side name} of a provisioned service, None if unknown."""
    from provisioning.models import Resource, Service

    service = Service.objects.filter(service_id=service_id).first()
    if service is None or service.status != Service.Status.ACTIVE:
        return None
    return {
        resource.capability: resource.name
        for resource in service.resources.all()
        if resource.status == Resource.Status.READY
    }


def find_service_snapshot(service_id: str, snapshot_id: str) -> Snapshot | None:
    return Snapshot.objects.filter(
        snapshot_id=snapshot_id,
        service_id=service_id,
        capability__in=list(RESOURCE_NAMES),
    ).first()


def mongo_client():
    return database_engine().client(timeout_ms=10000)


def tenant_s3_client(service_id: str):
    from minio import Minio

    access_key, secret_key = derive.s3_tenant_credentials(
        settings.MASTER_SECRET, service_id
    )
    return Minio(
        f"{connect_host()}:{settings.S3_PORT}",
        access_key=access_key,
        secret_key=secret_key,
        secure=False,
        region=settings.REGION,
    )


def _dump(capability: str, service_id: str, name: str, dest, progress) -> dict:
    from snapshots import dumpers

    if capability == Snapshot.Capability.DATABASE:
        client = mongo_client()
        try:
            return dumpers.dump_database(client, name, dest, progress=progress)
        finally:
            client.close()
    return dumpers.dump_bucket(tenant_s3_client(service_id), name, dest, progress)


def _restore(capability: str, service_id: str, name: str, src, progress) -> dict:
    from snapshots import dumpers

    if capability == Snapshot.Capability.DATABASE:
        client = mongo_client()
        try:
            return dumpers.restore_database(client, name, src, progress=progress)
        finally:
            client.close()
    return dumpers.restore_bucket(tenant_s3_client(service_id), name, src, progress)


def snapshot_resources(job: Job) -> dict:
    """One snapshot per provisioned resource of the service.

    Steps, per resource: dump it into a staging folder, archive the folder with
    restic, index the snapshot, remove the folder.
    """
    service_id, params = job.target, job.params
    resources = service_resources(service_id)
    if not resources:
        raise jobs.JobError("not_found", f"no service {service_id!r} with resources")

    repo = archive.ensure_repository()
    common.clean_after_interrupted_try(repo, job)
    snapshots = []
    with common.target_lock("service", service_id, exclusive=False):
        for capability in sorted(resources):
            snapshot = _snapshot_one(
                job, repo, service_id, capability, resources[capability], params
            )
            snapshots.append(snapshot.as_api())
    return {"serviceId": service_id, "snapshots": snapshots}


def _ensure_still_provisioned(service_id: str, capability: str, name: str) -> None:
    """Refuse to go on once the service was deprovisioned meanwhile.

    Deprovisioning refuses while this job is queued or running, but a call
    that marked the service just before the job was created is still
    dropping its tenants: loading data now would leave it behind.
    """
    resources = service_resources(service_id)
    if not resources or resources.get(capability) != name:
        raise jobs.JobError(
            "not_found", f"service {service_id!r} was deprovisioned during the job"
        )


def _snapshot_one(job, repo, service_id, capability, engine_name, params):
    resource_name = RESOURCE_NAMES[capability]
    root = DUMP_ROOT[capability]
    tags = {
        **params.get("tags", {}),
        "capability": capability,
        "serviceId": service_id,
        "resourceName": resource_name,
        "snapshotName": params["snapshotName"],
    }
    staging = common.staging_dir(job, capability)
    try:
        _ensure_still_provisioned(service_id, capability, engine_name)
        jobs.set_phase(job, f"dumping the {resource_name}")
        with jobs.Progress(job) as progress:
            stats = _engine_call(
                _dump,
                capability,
                service_id,
                engine_name,
                staging / root,
                lambda done: progress.update(done),
            )
        jobs.append_log(job, "dumped the %s: %s", resource_name, stats)

        jobs.set_phase(job, f"archiving the {resource_name}")
        with jobs.Progress(job) as progress:
            backup = repo.backup(
                [root],
                cwd=staging,
                tags=common.restic_tags(tags, job),
                progress=progress.restic_status,
            )
    finally:
        common.remove_tree(staging)

    return common.record_snapshot(
        job,
        backup,
        capability=capability,
        resource_name=resource_name,
        service_id=service_id,
        snapshot_name=params["snapshotName"],
        tags=tags,
        archive_path=root,
    )


def restore_resources(job: Job) -> dict:
    """Replace each listed resource's contents with its snapshot's.

    Steps, per snapshot: restic restore the dump into a staging folder, let
    the dumper replace the resource's contents (the database and bucket
    themselves, their users and keys stay, so the service's credentials keep
    working), remove the folder.
    """
    service_id = job.target
    resources = service_resources(service_id)
    if resources is None:
        raise jobs.JobError("not_found", f"no service {service_id!r}")
    snapshots = []
    for snapshot_id in job.params["snapshotIds"]:
        snapshot = find_service_snapshot(service_id, snapshot_id)
        if snapshot is None or snapshot.capability not in resources:
            raise jobs.JobError("not_found", f"no snapshot {snapshot_id!r} here")
        snapshots.append(snapshot)

    repo = archive.ensure_repository()
    common.clean_after_interrupted_try(repo, job)
    restored = []
    with common.target_lock("service", service_id, exclusive=True):
        for snapshot in snapshots:
            engine_name = resources[snapshot.capability]
            stats = _restore_one(job, repo, service_id, snapshot, engine_name)
            restored.append({**snapshot.as_api(), "restored": stats})
    return {"serviceId": service_id, "restored": restored}


def _restore_one(job, repo, service_id, snapshot, engine_name) -> dict:
    staging = common.staging_dir(job, snapshot.capability)
    try:
        jobs.set_phase(
            job, f"restoring the {snapshot.resource_name} dump", snapshot.original_size
        )
        with jobs.Progress(job, poll=lambda: common.tree_size(staging)):
            with repo.restore(snapshot.snapshot_id, staging) as running:
                running.check("restore")

        _ensure_still_provisioned(service_id, snapshot.capability, engine_name)
        jobs.set_phase(job, f"loading the {snapshot.resource_name}")
        with jobs.Progress(job) as progress:
            stats = _engine_call(
                _restore,
                snapshot.capability,
                service_id,
                engine_name,
                staging / snapshot.archive_path,
                lambda done: progress.update(done),
            )
    finally:
        common.remove_tree(staging)
    jobs.append_log(job, "restored the %s: %s", snapshot.resource_name, stats)
    return stats


def _engine_call(function, *args):
    """Run a dumper; engine outages become a job error without engine text.

    Engine errors may quote URIs or keys, so only their type is reported.
    """
    from minio.error import MinioException
    from pymongo.errors import ConnectionFailure, PyMongoError
    from urllib3.exceptions import HTTPError

    from snapshots import dumpers

    try:
        return function(*args)
    except (ConnectionFailure, HTTPError, EngineUnavailable) as exc:
        raise jobs.JobError(
            "engine_unavailable", f"engine not answering ({type(exc).__name__})"
        ) from exc
    except dumpers.DumpError as exc:
        raise jobs.JobError("corrupt", f"unusable dump: {exc}") from exc
    except dumpers.EngineRefused as exc:
        # Names the object and the S3 error code only, never a credential.
        raise jobs.JobError("engine_error", f"restore refused: {exc}") from exc
    except (PyMongoError, MinioException) as exc:
        raise jobs.JobError(
            "engine_error", f"{function.__name__[1:]} failed: {type(exc).__name__}"
        ) from exc
