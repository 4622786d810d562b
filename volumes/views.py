"""Control API: the node's Docker volumes, for operators and the orchestrator."""

from django.db.models import Count
from rest_framework.response import Response
from rest_framework.views import APIView

from corestore_project.api import NotFound
from volumes.driver import directory_size
from volumes.models import Volume


def volume_json(volume: Volume) -> dict:
    return {
        "name": volume.name,
        "mountpoint": str(volume.mountpoint),
        "createdAt": int(volume.created_at.timestamp() * 1000),
        "size": directory_size(volume.mountpoint),
        "mounts": volume.mount_count,
        "serviceId": volume.service_id or None,
        "options": volume.options,
        "labels": volume.labels,
    }


def volumes_with_counts():
    return Volume.objects.annotate(mount_count=Count("mounts"))


class VolumeListView(APIView):
    """GET /volumes[?serviceId=...]: every volume with its size and mounts."""

    def get(self, request):
        volumes = volumes_with_counts()
        service_id = request.query_params.get("serviceId")
        if service_id:
            volumes = volumes.filter(service_id=service_id)
        return Response({"volumes": [volume_json(volume) for volume in volumes]})


class VolumeDetailView(APIView):
    """GET /volumes/<name>: one volume."""

    def get(self, request, name):
        volume = volumes_with_counts().filter(name=name).first()
        if volume is None:
            raise NotFound(f"no volume named {name!r}")
        return Response(volume_json(volume))
