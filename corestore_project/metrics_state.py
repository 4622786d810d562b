"""The node's state as Prometheus metrics, read from the metadata database.

Each app's rows are read only when the app defines its models, so the scrape
keeps working on a database that an older or newer release migrated.
"""

import logging
import os
import time

from django.apps import apps
from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

# Walking a large volume takes time: sizes are reused for this long.
VOLUME_SIZE_TTL = 30.0
_volume_sizes: dict[str, tuple[float, int]] = {}


def model(app_label: str, name: str):
    try:
        return apps.get_model(app_label, name)
    except LookupError:
        return None


def tree_size(path) -> int:
    """Bytes of the regular files below path, counting each inode once."""
    total, seen = 0, set()
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                stat = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) in seen:
                continue
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_size
    return total


def volume_size(volume) -> int:
    now = time.monotonic()
    cached = _volume_sizes.get(volume.name)
    if cached and now - cached[0] < VOLUME_SIZE_TTL:
        return cached[1]
    size = tree_size(volume.mountpoint)
    _volume_sizes[volume.name] = (now, size)
    return size


class StateCollector:
    def collect(self):
        for part in (self.services, self.volumes, self.snapshots, self.jobs):
            try:
                yield from part()
            except Exception:  # noqa: BLE001 - one broken part must not hide the rest
                logger.exception("metrics: %s failed", part.__name__)

    def services(self):
        return []

    def volumes(self):
        Volume = model("volumes", "Volume")
        VolumeMount = model("volumes", "VolumeMount")
        if Volume is None:
            return

        count = GaugeMetricFamily(
            "corestore_volumes", "Docker volumes managed by the plugin."
        )
        size = GaugeMetricFamily(
            "corestore_volume_bytes",
            "Bytes of the files in each volume (refreshed every 30 s).",
            labels=["volume"],
        )
        mounts = GaugeMetricFamily(
            "corestore_volume_mounts",
            "Active mounts (containers holding the volume) per volume.",
            labels=["volume"],
        )
        mount_counts = {}
        if VolumeMount is not None:
            mount_counts = dict(
                VolumeMount.objects.values_list("volume__name")
                .annotate(n=Count("id"))
                .values_list("volume__name", "n")
            )

        volumes = list(Volume.objects.all())
        count.add_metric([], len(volumes))
        for volume in volumes:
            size.add_metric([volume.name], volume_size(volume))
            mounts.add_metric([volume.name], mount_counts.get(volume.name, 0))
        yield count
        yield size
        yield mounts

        active = GaugeMetricFamily(
            "corestore_active_mounts", "Active volume mounts on this node."
        )
        active.add_metric([], sum(mount_counts.values()))
        yield active

    def snapshots(self):
        return []

    def jobs(self):
        return []
