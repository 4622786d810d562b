"""The node's state as Prometheus metrics, read from the metadata database.

Each app's rows are read only when the app defines its models, so the scrape
keeps working on a database that an older or newer release migrated.
"""

import logging
import os
import time

from django.apps import apps
from django.conf import settings
from django.db.models import Count, Sum
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

logger = logging.getLogger(__name__)

# Walking a large volume or the archive takes time: sizes are reused for this
# long (per API worker).
TREE_SIZE_TTL = 30.0
_tree_sizes: dict[str, tuple[float, int]] = {}


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


def cached_tree_size(path) -> int:
    now = time.monotonic()
    cached = _tree_sizes.get(str(path))
    if cached and now - cached[0] < TREE_SIZE_TTL:
        return cached[1]
    size = tree_size(path)
    _tree_sizes[str(path)] = (now, size)
    return size


class StateCollector:
    def collect(self):
        for part in (self.services, self.volumes, self.snapshots, self.jobs):
            try:
                yield from part()
            except Exception:  # noqa: BLE001 - one broken part must not hide the rest
                logger.exception("metrics: %s failed", part.__name__)

    def services(self):
        Service = model("provisioning", "Service")
        Resource = model("provisioning", "Resource")
        if Service is None:
            return

        services = GaugeMetricFamily(
            "corestore_services",
            "Provisioned workload services, by status.",
            labels=["status"],
        )
        for status, count in _counts(Service.objects, "status"):
            services.add_metric([status], count)
        yield services

        if Resource is not None:
            resources = GaugeMetricFamily(
                "corestore_resources",
                "Databases and buckets of the services, by capability, engine "
                "and status.",
                labels=["capability", "engine", "status"],
            )
            for capability, engine, status, count in _counts(
                Resource.objects, "capability", "engine", "status"
            ):
                resources.add_metric([capability, engine, status], count)
            yield resources

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
            size.add_metric([volume.name], cached_tree_size(volume.mountpoint))
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
        Snapshot = model("snapshots", "Snapshot")
        if Snapshot is None:
            return

        count = GaugeMetricFamily(
            "corestore_snapshots",
            "Snapshots in the archive, by capability.",
            labels=["capability"],
        )
        original = GaugeMetricFamily(
            "corestore_snapshot_original_bytes",
            "Bytes the snapshotted data had, summed by capability.",
            labels=["capability"],
        )
        stored = GaugeMetricFamily(
            "corestore_snapshot_stored_bytes",
            "Compressed, encrypted bytes that the snapshots reference in the "
            "archive, summed by capability (shared data counts in each).",
            labels=["capability"],
        )
        rows = Snapshot.objects.values("capability").annotate(
            n=Count("id"), original=Sum("original_size"), stored=Sum("stored_size")
        )
        for row in rows.order_by("capability"):
            count.add_metric([row["capability"]], row["n"])
            original.add_metric([row["capability"]], row["original"] or 0)
            stored.add_metric([row["capability"]], row["stored"] or 0)
        yield count
        yield original
        yield stored

        archive = GaugeMetricFamily(
            "corestore_archive_bytes",
            "Bytes the snapshot archive takes on disk (refreshed every 30 s).",
        )
        archive.add_metric([], cached_tree_size(settings.DATA_DIR / "archive"))
        yield archive

    def jobs(self):
        Job = model("snapshots", "Job")
        if Job is None:
            return

        jobs = GaugeMetricFamily(
            "corestore_jobs",
            "Snapshot and restore jobs recorded, by kind and status.",
            labels=["kind", "status"],
        )
        for kind, status, count in _counts(Job.objects, "kind", "status"):
            jobs.add_metric([kind, status], count)
        yield jobs

        yield job_durations(Job)


def _counts(queryset, *fields):
    rows = queryset.values(*fields).annotate(n=Count("pk")).order_by(*fields)
    return [(*(row[field] for field in fields), row["n"]) for row in rows]


JOB_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600)


def job_durations(Job) -> HistogramMetricFamily:
    """How long finished jobs ran, from their rows' start and finish times."""
    histogram = HistogramMetricFamily(
        "corestore_job_duration_seconds",
        "Run time of finished jobs, by kind and outcome (succeeded, failed).",
        labels=["kind", "outcome"],
    )
    finished = Job.objects.filter(
        status__in=["succeeded", "failed"],
        started_at__isnull=False,
        finished_at__isnull=False,
    ).values_list("kind", "status", "started_at", "finished_at")

    series: dict[tuple[str, str], list[float]] = {}
    for kind, status, started, ended in finished.iterator():
        seconds = max((ended - started).total_seconds(), 0.0)
        series.setdefault((kind, status), []).append(seconds)

    for (kind, outcome), durations in sorted(series.items()):
        buckets = [
            (str(float(bound)), sum(1 for d in durations if d <= bound))
            for bound in JOB_BUCKETS
        ]
        buckets.append(("+Inf", len(durations)))
        histogram.add_metric([kind, outcome], buckets, sum(durations))
    return histogram
