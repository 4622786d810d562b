"""Schemas of the control API's answers, and where each endpoint uses them.

The views build their answers as plain dicts, so drf-spectacular cannot see
their shape: these serializers describe it (they are never used to render),
and view extensions attach them, with the request serializers the views
validate with, to every endpoint. The schema test checks real answers
against the result, so a change in an answer's shape fails it.
"""

import functools

from drf_spectacular.extensions import (
    OpenApiSerializerFieldExtension,
    OpenApiViewExtension,
)
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers

from provisioning.models import Resource, Service
from snapshots.models import Job, Snapshot

# The models' choices, so the description cannot drift from them; "removed"
# is what a deprovision answers for what it dropped.
CAPABILITIES = Resource.Capability.values
SNAPSHOT_CAPABILITIES = Snapshot.Capability.values
SERVICE_STATUSES = [*Service.Status.values, "removed"]
RESOURCE_STATUSES = [*Resource.Status.values, "removed"]
JOB_KINDS = Job.Kind.values
JOB_STATUSES = Job.Status.values


def epoch_ms(**kwargs):
    return serializers.IntegerField(help_text="milliseconds since the epoch", **kwargs)


# --- answers -------------------------------------------------------------------


class ResourceSerializer(serializers.Serializer):
    capability = serializers.ChoiceField(CAPABILITIES)
    resourceName = serializers.ChoiceField(
        ["db", "bucket"], help_text="the name snapshots give this resource"
    )
    name = serializers.CharField(help_text="database or bucket name in the engine")
    engine = serializers.CharField()
    endpoint = serializers.CharField()
    status = serializers.ChoiceField(RESOURCE_STATUSES)
    createdAt = epoch_ms()


class ServiceSerializer(serializers.Serializer):
    serviceId = serializers.CharField()
    serviceName = serializers.CharField()
    status = serializers.ChoiceField(SERVICE_STATUSES)
    createdAt = epoch_ms(required=False)
    resources = ResourceSerializer(many=True)


class ProvisionedServiceSerializer(ServiceSerializer):
    env = serializers.DictField(
        child=serializers.CharField(),
        help_text=(
            "Environment for the workload: MONGODB_URI, MONGODB_DATABASE, "
            "S3_BUCKET, S3_ENDPOINT, S3_REGION, AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION and common "
            "aliases, for the capabilities the service has."
        ),
    )


class ServiceListSerializer(serializers.Serializer):
    services = ServiceSerializer(many=True)


class VolumeSerializer(serializers.Serializer):
    name = serializers.CharField()
    mountpoint = serializers.CharField()
    createdAt = epoch_ms()
    size = serializers.IntegerField(help_text="bytes of the files in the volume")
    mounts = serializers.IntegerField(help_text="containers holding it now")
    serviceId = serializers.CharField(allow_null=True)
    options = serializers.DictField(child=serializers.CharField())
    labels = serializers.DictField(child=serializers.CharField())


class VolumeListSerializer(serializers.Serializer):
    volumes = VolumeSerializer(many=True)


class SnapshotSerializer(serializers.Serializer):
    capability = serializers.ChoiceField(SNAPSHOT_CAPABILITIES)
    resourceName = serializers.CharField(
        help_text="`db`, `bucket`, or the volume's name"
    )
    snapshotId = serializers.CharField()
    originalSize = serializers.IntegerField(help_text="bytes of the data")
    storedSize = serializers.IntegerField(
        help_text="compressed, encrypted bytes of the data it references in the "
        "archive; data shared with other snapshots is counted in each"
    )
    createdAt = epoch_ms()
    tags = serializers.DictField(child=serializers.CharField())


class SnapshotListSerializer(serializers.Serializer):
    snapshots = SnapshotSerializer(many=True)


class ServiceSnapshotsSerializer(SnapshotListSerializer):
    serviceId = serializers.CharField(required=False)


class RestoredSnapshotSerializer(SnapshotSerializer):
    restored = serializers.DictField(help_text="what the engine loaded (counts)")


class ServiceRestoreSerializer(serializers.Serializer):
    serviceId = serializers.CharField()
    restored = RestoredSnapshotSerializer(many=True)


class VolumeRestoreSerializer(serializers.Serializer):
    name = serializers.CharField()
    snapshotId = serializers.CharField()
    restored = SnapshotSerializer()
    bytes = serializers.IntegerField()


class JobProgressSerializer(serializers.Serializer):
    phase = serializers.CharField(allow_blank=True)
    bytesDone = serializers.IntegerField()
    bytesTotal = serializers.IntegerField(allow_null=True)


@extend_schema_field(
    {
        "type": "object",
        "nullable": True,
        "description": "why the job failed; null unless it did",
        "properties": {
            "code": {"type": "string", "example": "not_found"},
            "message": {"type": "string"},
        },
        "required": ["code", "message"],
    }
)
class JobErrorField(serializers.JSONField):
    # Described inline: OpenAPI 3.0 validators reject null for a nullable $ref.
    pass


class JobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    kind = serializers.ChoiceField(JOB_KINDS)
    target = serializers.CharField(help_text="volume name or serviceId")
    serviceId = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(JOB_STATUSES)
    progress = JobProgressSerializer()
    result = serializers.JSONField(
        allow_null=True, help_text="what the endpoint answers once it succeeded"
    )
    error = JobErrorField(allow_null=True)
    attempts = serializers.IntegerField()
    createdAt = epoch_ms()
    startedAt = epoch_ms(allow_null=True)
    finishedAt = epoch_ms(allow_null=True)
    log = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="GET /jobs/{id} only"
    )


class JobListSerializer(serializers.Serializer):
    jobs = JobSerializer(many=True)


class JobAcceptedSerializer(serializers.Serializer):
    job = JobSerializer()
    url = serializers.CharField(help_text="where to follow the job")


# --- how endpoints use them ----------------------------------------------------

PREFER = OpenApiParameter(
    "Prefer",
    str,
    OpenApiParameter.HEADER,
    enum=["respond-async"],
    description=(
        "`respond-async`: answer 202 with the job at once instead of waiting "
        "for it to finish"
    ),
)


def job_endpoint(summary, request, result):
    return extend_schema(
        summary=summary,
        request=request,
        parameters=[PREFER],
        responses={
            200: result,
            202: OpenApiResponse(
                JobAcceptedSerializer, description="queued (Prefer: respond-async)"
            ),
        },
    )


def query(name, description, **kwargs):
    return OpenApiParameter(
        name, str, OpenApiParameter.QUERY, description=description, **kwargs
    )


def view_path(view) -> str:
    return f"{view.__module__}.{view.__qualname__}"


class AnnotatedViews(OpenApiViewExtension):
    """Attaches the annotations of view_annotations() to the views they name."""

    @classmethod
    def _matches(cls, target) -> bool:
        return view_path(target) in view_annotations()

    def view_replacement(self):
        view = type(self.target.__name__, (self.target,), {})
        return extend_schema_view(**view_annotations()[view_path(self.target)])(view)


class TagsFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "snapshots.serializers.TagsField"

    def map_serializer_field(self, auto_schema, direction):
        return {
            "oneOf": [
                {"type": "object", "additionalProperties": {"type": "string"}},
                {"type": "array", "items": {"type": "string"}},
            ],
            "description": 'tags as {"key": "value"} or ["key=value", ...]',
        }


def _provisioning():
    from provisioning import serializers as requests

    return {
        "provisioning.views.ProvisionView": dict(
            post=extend_schema(
                summary="Give a service a database and/or a bucket",
                description=(
                    "Idempotent: the same serviceId always gets the same names "
                    "and credentials. 503 when an engine did not answer; "
                    "repeating the call completes the service."
                ),
                request=requests.ProvisionRequest,
                responses={
                    200: OpenApiResponse(
                        ProvisionedServiceSerializer, "it was provisioned already"
                    ),
                    201: OpenApiResponse(ProvisionedServiceSerializer, "provisioned"),
                },
            )
        ),
        "provisioning.views.DeprovisionView": dict(
            post=extend_schema(
                summary="Drop a service's users, databases, buckets and keys",
                request=requests.DeprovisionRequest,
                responses={200: ServiceSerializer},
            )
        ),
        "provisioning.views.ServiceListView": dict(
            get=extend_schema(
                operation_id="resources_list",
                summary="Provisioned services and their resources (no secrets)",
                responses={200: ServiceListSerializer},
            )
        ),
        "provisioning.views.ServiceDetailView": dict(
            get=extend_schema(
                operation_id="resources_retrieve",
                summary="One provisioned service (no secrets)",
                parameters=[OpenApiParameter("service_id", str, OpenApiParameter.PATH)],
                responses={200: ServiceSerializer},
            )
        ),
    }


def _volumes():
    return {
        "volumes.views.VolumeListView": dict(
            get=extend_schema(
                operation_id="volumes_list",
                summary="Managed Docker volumes with size and mount count",
                parameters=[query("serviceId", "only the volumes of this service")],
                responses={200: VolumeListSerializer},
            )
        ),
        "volumes.views.VolumeDetailView": dict(
            get=extend_schema(
                operation_id="volumes_retrieve",
                summary="One managed Docker volume",
                parameters=[OpenApiParameter("name", str, OpenApiParameter.PATH)],
                responses={200: VolumeSerializer},
            )
        ),
    }


def _snapshots():
    from snapshots import serializers as requests

    return {
        "snapshots.views.VolumeSnapshotView": dict(
            post=job_endpoint(
                "Snapshot a volume",
                requests.VolumeSnapshotRequest,
                SnapshotSerializer,
            )
        ),
        "snapshots.views.VolumeRestoreView": dict(
            post=job_endpoint(
                "Restore a volume in place from one of its snapshots",
                requests.VolumeRestoreRequest,
                VolumeRestoreSerializer,
            )
        ),
        "snapshots.views.ResourceSnapshotView": dict(
            post=job_endpoint(
                "Snapshot a service's database and bucket",
                requests.ResourceSnapshotRequest,
                ServiceSnapshotsSerializer,
            )
        ),
        "snapshots.views.ResourceRestoreView": dict(
            post=job_endpoint(
                "Replace a service's database and bucket with snapshots",
                requests.ResourceRestoreRequest,
                ServiceRestoreSerializer,
            )
        ),
        "snapshots.views.SnapshotListView": dict(
            get=extend_schema(
                operation_id="snapshots_list",
                summary="Snapshots in the archive, newest first",
                parameters=[
                    query("serviceId", "of this service"),
                    query("capability", "of this kind", enum=SNAPSHOT_CAPABILITIES),
                    query("resourceName", "`db`, `bucket` or a volume name"),
                    query("snapshotName", "with this name"),
                    query("volume", "of this volume"),
                    query("name", "of this volume (alias of `volume`)"),
                ],
                responses={200: SnapshotListSerializer},
            )
        ),
        "snapshots.views.JobListView": dict(
            get=extend_schema(
                operation_id="jobs_list",
                summary="Jobs, newest first",
                parameters=[
                    query("status", "in this state", enum=JOB_STATUSES),
                    query("kind", "of this kind", enum=JOB_KINDS),
                    query("target", "on this volume or serviceId"),
                    query("serviceId", "of this service"),
                    OpenApiParameter(
                        "limit",
                        int,
                        OpenApiParameter.QUERY,
                        description="at most this many (default 100, up to 1000)",
                    ),
                ],
                responses={200: JobListSerializer},
            )
        ),
        "snapshots.views.JobDetailView": dict(
            get=extend_schema(
                operation_id="jobs_retrieve",
                summary="A job's state, progress, result and log",
                parameters=[
                    OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
                ],
                responses={200: JobSerializer},
            )
        ),
    }


@functools.cache
def view_annotations() -> dict:
    """{view class path: {method: extend_schema(...)}}.

    Built on first use, when the schema is generated: importing the apps'
    serializers at start-up would tie this module's import to theirs.
    """
    return {**_provisioning(), **_volumes(), **_snapshots()}
