"""Provision and deprovision the engine-side resources of a workload service.

The metadata database records what exists; the engines hold the tenants. The
two cannot change in one transaction, so rows are written first as `pending`
and marked `ready` only after the engine confirmed the tenant: a failure half
way leaves pending rows that the next provision call completes. Engine steps
are "ensure" operations, so two calls racing for one service both succeed.
"""

import logging
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from corestore_project import derive
from corestore_project.api import Conflict, NotFound, Unavailable
from corestore_project.engines import EngineUnavailable, database_engine, object_engine

from .models import Resource, Service

logger = logging.getLogger(__name__)

# A bucket name is at most 63 characters; the slug leaves room for "-" and the
# 12-character hash, and stays short enough to read in listings. With 12 hex
# digits (48 bits) a million services share a name with a chance of about 1 in
# 500 (8 digits collided after some 100 thousand); services named with the 8
# digits used before keep their names.
SLUG_LENGTH = 40
HASH_LENGTH = 12
CLAIM_ATTEMPTS = 3

DATABASE = Resource.Capability.DATABASE


def engine_name(service_name: str, service_id: str) -> str:
    """The database and bucket name of a service.

    Lowercase letters, digits and single hyphens, starting with a letter or
    digit and ending with a hex digit: valid under the S3 bucket rules (3-63
    characters, no "xn--" prefix since hyphens never repeat) and the MongoDB
    database name rules. The hash of the serviceId keeps two services with the
    same name apart.
    """
    slug = derive.slug(service_name, SLUG_LENGTH)
    return f"{slug}-{derive.short_hash(service_id, HASH_LENGTH)}"


def _host_port(port: int) -> str:
    host = settings.PUBLIC_HOST
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def database_endpoint() -> str:
    return _host_port(settings.DB_PORT)


def s3_endpoint() -> str:
    return f"http://{_host_port(settings.S3_PORT)}"


def endpoint_of(resource: Resource) -> str:
    if resource.capability == DATABASE:
        return database_endpoint()
    return s3_endpoint()


# The environment handed to the workload. This is the only place a tenant
# secret leaves corestore.
def database_env(resource: Resource, service_id: str) -> dict:
    user, password = derive.db_tenant_credentials(settings.MASTER_SECRET, service_id)
    database = resource.name
    options = urlencode({"authSource": database, **database_engine().uri_options})
    uri = (
        f"mongodb://{quote(user, safe='')}:{quote(password, safe='')}"
        f"@{database_endpoint()}/{database}?{options}"
    )
    return {
        "MONGODB_URI": uri,
        "MONGODB_URL": uri,
        "MONGO_URL": uri,
        "MONGODB_DATABASE": database,
        "MONGODB_USERNAME": user,
        "MONGODB_PASSWORD": password,
    }


def objectstorage_env(resource: Resource, service_id: str) -> dict:
    access_key, secret_key = derive.s3_tenant_credentials(
        settings.MASTER_SECRET, service_id
    )
    endpoint = s3_endpoint()
    region = settings.REGION
    return {
        "S3_BUCKET": resource.name,
        "S3_ENDPOINT": endpoint,
        "S3_REGION": region,
        "S3_ACCESS_KEY": access_key,
        "S3_SECRET_KEY": secret_key,
        "S3_ACCESS_KEY_ID": access_key,
        "S3_SECRET_ACCESS_KEY": secret_key,
        # Buckets are addressed by path: the engine has no wildcard DNS name.
        "S3_FORCE_PATH_STYLE": "true",
        "S3_USE_PATH_STYLE": "true",
        "AWS_S3_FORCE_PATH_STYLE": "true",
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }


def service_env(service: Service) -> dict:
    env = {}
    for resource in service.resources.all():
        if resource.status != Resource.Status.READY:
            continue
        if resource.capability == DATABASE:
            env.update(database_env(resource, service.service_id))
        else:
            env.update(objectstorage_env(resource, service.service_id))
    return dict(sorted(env.items()))


def epoch_ms(moment) -> int:
    return int(moment.timestamp() * 1000)


def describe_resource(resource: Resource) -> dict:
    return {
        "capability": resource.capability,
        "resourceName": resource.resource_name,
        "name": resource.name,
        "engine": resource.engine,
        "endpoint": endpoint_of(resource),
        "status": resource.status,
        "createdAt": epoch_ms(resource.created_at),
    }


def describe_service(service: Service) -> dict:
    """A service and its resources as the API shows them: no secrets."""
    return {
        "serviceId": service.service_id,
        "serviceName": service.service_name,
        "status": service.status,
        "createdAt": epoch_ms(service.created_at),
        "resources": [describe_resource(r) for r in service.resources.all()],
    }


def load_service(service_id: str) -> Service:
    try:
        return Service.objects.prefetch_related("resources").get(service_id=service_id)
    except Service.DoesNotExist:
        raise NotFound(f"no service with serviceId {service_id!r}") from None


def _engine_kind(capability: str) -> str:
    engine = database_engine() if capability == DATABASE else object_engine()
    return engine.kind


def _claim(service_id: str, service_name: str, capabilities) -> tuple[Service, bool]:
    """Create or find the service and a row for each requested capability.

    A short transaction, without engine calls: on SQLite it holds the write
    lock of the whole metadata database. Two racing calls meet on the unique
    service_id; the loser of an insert race retries and finds the winner's row.
    """
    attempt = 1
    while True:
        try:
            with transaction.atomic():
                return _claim_once(service_id, service_name, capabilities)
        except IntegrityError:
            if attempt == CLAIM_ATTEMPTS:
                raise
            attempt += 1
            logger.info("provision %s: lost an insert race, retrying", service_id)


def _claim_once(service_id, service_name, capabilities) -> tuple[Service, bool]:
    service, created = Service.objects.select_for_update().get_or_create(
        service_id=service_id, defaults={"service_name": service_name}
    )
    if service.status == Service.Status.DEPROVISIONING:
        raise Conflict(
            f"service {service_id!r} is being deprovisioned; "
            "repeat the deprovision call, then provision again"
        )

    existing = {r.capability: r.name for r in service.resources.all()}
    # The first name stays: later calls may carry a renamed service, and a
    # service named with a shorter hash keeps it for every capability.
    name = next(iter(existing.values()), None) or engine_name(
        service.service_name, service_id
    )
    for capability in capabilities:
        if capability in existing:
            continue
        taken = Resource.objects.filter(capability=capability, name=name)
        if taken.exists():
            raise Conflict(f"the {capability} name {name!r} belongs to another service")
        Resource.objects.create(
            service=service,
            capability=capability,
            name=name,
            engine=_engine_kind(capability),
        )
    return service, created


def _ensure_in_engine(resource: Resource, service_id: str) -> None:
    if resource.capability == DATABASE:
        user, password = derive.db_tenant_credentials(
            settings.MASTER_SECRET, service_id
        )
        database_engine().ensure_tenant(resource.name, user, password)
    else:
        access_key, _ = derive.s3_tenant_credentials(settings.MASTER_SECRET, service_id)
        object_engine().ensure_tenant(resource.name, access_key, service_id)


def _drop_in_engine(resource: Resource, service_id: str) -> None:
    if resource.capability == DATABASE:
        user, _ = derive.db_tenant_credentials(settings.MASTER_SECRET, service_id)
        database_engine().drop_tenant(resource.name, user)
    else:
        access_key, _ = derive.s3_tenant_credentials(settings.MASTER_SECRET, service_id)
        object_engine().drop_tenant(resource.name, access_key, service_id)


def _complete(resource: Resource, service_id: str) -> bool:
    """Ensure one pending resource in its engine; False if the engine failed."""
    try:
        _ensure_in_engine(resource, service_id)
    except EngineUnavailable as exc:
        logger.warning(
            "provision %s: %s engine failed: %s",
            service_id,
            resource.capability,
            exc,
        )
        Resource.objects.filter(pk=resource.pk).update(
            last_error=type(exc).__name__, updated_at=timezone.now()
        )
        return False

    marked = Resource.objects.filter(pk=resource.pk).update(
        status=Resource.Status.READY, last_error="", updated_at=timezone.now()
    )
    if not marked:
        _undo_after_deprovision(resource, service_id)
    logger.info(
        "provision %s: %s %s ready", service_id, resource.capability, resource.name
    )
    return True


def _undo_after_deprovision(resource: Resource, service_id: str) -> None:
    """Drop a tenant made while a deprovision call removed its row.

    Without this the engine would keep a tenant that no record names. Only
    when no newer row for the capability exists: a provision call that came
    after the deprovision owns the tenant now.
    """
    newer = Resource.objects.filter(
        service__service_id=service_id, capability=resource.capability
    )
    if not newer.exists():
        logger.warning(
            "provision %s: deprovisioned meanwhile; dropping %s %s again",
            service_id,
            resource.capability,
            resource.name,
        )
        try:
            _drop_in_engine(resource, service_id)
        except EngineUnavailable:
            logger.exception("provision %s: tenant left in the engine", service_id)
    raise Conflict(f"service {service_id!r} was deprovisioned during this call")


def provision_service(
    service_id: str, service_name: str, capabilities: list[str]
) -> tuple[dict, bool]:
    """Ensure the service has a tenant in the engine of every capability.

    Steps: claim the service and its resource rows (pending for new ones);
    ensure every pending resource in its engine and mark it ready; answer the
    service with its environment, or 503 if an engine failed, leaving the
    failed resources pending for the next call. Ready resources are not
    touched again, so a repeated call changes nothing.
    """
    service, created = _claim(service_id, service_name, capabilities)

    pending = service.resources.filter(status=Resource.Status.PENDING)
    failed = [r.capability for r in pending if not _complete(r, service_id)]
    if failed:
        raise Unavailable(
            f"the {' and '.join(failed)} engine did not answer; what was made is "
            "kept, and repeating the call completes the service"
        )

    service = load_service(service_id)
    answer = describe_service(service)
    answer["env"] = service_env(service)
    return answer, created


def _refuse_while_job_active(service_id: str) -> None:
    from snapshots.models import Job

    job = (
        Job.objects.filter(
            kind__in=(Job.Kind.SNAPSHOT_RESOURCES, Job.Kind.RESTORE_RESOURCES),
            target=service_id,
            status__in=Job.ACTIVE,
        )
        .order_by("created_at")
        .first()
    )
    if job is not None:
        raise Conflict(
            f"service {service_id!r} has a {job.kind} job {job.pk} ({job.status}); "
            "wait for it to finish, then deprovision"
        )


def deprovision_service(service_id: str) -> dict:
    """Remove everything a service has in the engines, then its records.

    Steps: mark the service deprovisioning (404 if unknown; 409 while a
    snapshot or restore job of the service is queued or running, since a
    restore would load the tenant's data back), which refuses provision calls
    from then on; drop each resource's tenant in its engine
    (user and database; key and bucket with all objects) and delete its row as
    soon as the engine confirmed, so that a retry after an engine failure (503)
    resumes where it stopped; delete the service row. Calls for one service
    run one after the other, so only the first answers 200 and the others,
    like any later call, answer 404.
    """
    from snapshots.common import target_lock

    # A file lock, not a transaction: on SQLite a transaction would hold the
    # whole metadata database for as long as the engines take.
    with target_lock("deprovision", service_id, exclusive=True):
        return _deprovision(service_id)


def _deprovision(service_id: str) -> dict:
    with transaction.atomic():
        try:
            service = Service.objects.select_for_update().get(service_id=service_id)
        except Service.DoesNotExist:
            raise NotFound(f"no service with serviceId {service_id!r}") from None
        _refuse_while_job_active(service_id)
        service.status = Service.Status.DEPROVISIONING
        service.save(update_fields=["status", "updated_at"])
        resources = list(service.resources.all())

    removed, failed = [], []
    for resource in resources:
        try:
            _drop_in_engine(resource, service_id)
        except EngineUnavailable as exc:
            logger.warning(
                "deprovision %s: %s engine failed: %s",
                service_id,
                resource.capability,
                exc,
            )
            failed.append(resource.capability)
            continue
        described = describe_resource(resource)
        described["status"] = "removed"
        removed.append(described)
        Resource.objects.filter(pk=resource.pk).delete()
        logger.info(
            "deprovision %s: %s %s removed",
            service_id,
            resource.capability,
            resource.name,
        )

    if failed:
        raise Unavailable(
            f"the {' and '.join(failed)} engine did not answer; the service stays "
            "marked deprovisioning and repeating the call completes it"
        )
    deleted, _ = Service.objects.filter(pk=service.pk).delete()
    if not deleted:
        raise NotFound(f"service {service_id!r} was deprovisioned by another call")
    return {
        "serviceId": service.service_id,
        "serviceName": service.service_name,
        "status": "removed",
        "resources": removed,
    }
