"""What volume and resource snapshots share: tags, target locks, the index."""

import fcntl
import hashlib
import logging
import re
import shutil
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from django.conf import settings

from snapshots import archive, jobs
from snapshots.models import Job, Snapshot
from snapshots.restic import BackupResult, Repository, ResticError

logger = logging.getLogger(__name__)

# How long a retry waits for a lock that another restic still holds.
LOCK_WAIT_SECONDS = 10

# Tags that the archive sets itself; a caller's tags cannot replace them.
RESERVED_TAGS = ("capability", "serviceId", "resourceName", "snapshotName", "job")


def encode_tag(key: str, value: str) -> str:
    """One restic tag `key=value`; restic splits tag lists on commas."""
    value = "".join(
        f"%{ord(char):02X}" if char in ",%" or ord(char) < 32 else char
        for char in str(value)
    )
    return f"{key}={value}"


def restic_tags(tags: dict, job: Job) -> list[str]:
    return [encode_tag(key, value) for key, value in tags.items()] + [
        encode_tag("job", str(job.pk))
    ]


_RESTIC_TIME = re.compile(r"^(\S+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


def parse_time(value: str) -> datetime:
    """restic's RFC 3339 time with nanoseconds (Python keeps microseconds)."""
    base, fraction, zone = _RESTIC_TIME.match(value).groups()
    zone = "+00:00" if zone in (None, "Z") else zone
    micros = (fraction or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{base}.{micros}{zone}")


def record_snapshot(
    job: Job,
    backup: BackupResult,
    capability: str,
    resource_name: str,
    service_id: str,
    snapshot_name: str,
    tags: dict,
    archive_path: str,
) -> Snapshot:
    """Index a new archive snapshot with its sizes."""
    snapshot, _ = Snapshot.objects.update_or_create(
        snapshot_id=backup.snapshot_id,
        defaults={
            "capability": capability,
            "resource_name": resource_name,
            "service_id": service_id,
            "snapshot_name": snapshot_name,
            "original_size": int(backup.summary.get("total_bytes_processed", 0)),
            "stored_size": backup.stored_size,
            "created_at": parse_time(backup.time),
            "tags": tags,
            "archive_path": archive_path,
            "job": job,
        },
    )
    jobs.append_log(
        job,
        "snapshot %s of %s %s: %d bytes, %d added to the archive",
        backup.snapshot_id[:12],
        capability,
        resource_name,
        snapshot.original_size,
        int(backup.summary.get("data_added", 0)),
    )
    return snapshot


def clean_after_interrupted_try(repo: Repository, job: Job) -> None:
    """Clear what an interrupted earlier attempt of this job left in the archive.

    A worker killed after restic saved a snapshot but before it was indexed
    leaves a snapshot nobody can see; the retry starts clean instead. `forget`
    needs the archive to itself: while another restic holds a lock (a job
    running beside this one), it is tried again for up to LOCK_WAIT_SECONDS.
    """
    if job.attempts <= 1:
        return
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    delay = 0.5
    while True:
        try:
            _forget_leftovers(repo, job)
            return
        except ResticError as exc:
            if "locked" not in exc.stderr or time.monotonic() + delay > deadline:
                raise
        jobs.append_log(job, "the archive is locked; trying again in %.1f s", delay)
        time.sleep(delay)
        delay = min(delay * 2, 4)


def _forget_leftovers(repo: Repository, job: Job) -> None:
    # The killed try's restic left its lock; only locks of dead processes go.
    repo.unlock()
    known = set(Snapshot.objects.filter(job=job).values_list("snapshot_id", flat=True))
    leftovers = [
        snap["id"]
        for snap in repo.snapshots(tags=[encode_tag("job", str(job.pk))])
        if snap["id"] not in known
    ]
    if leftovers:
        repo.forget(leftovers)
        jobs.append_log(
            job, "forgot %d snapshot(s) of an interrupted try", len(leftovers)
        )


@contextmanager
def target_lock(kind: str, name: str, exclusive: bool):
    """Serialise restores of one target against its snapshots and restores.

    Snapshots of one target may run together (shared); a restore runs alone
    (exclusive). A flock dies with its process, so a killed worker never
    leaves one behind.
    """
    locks = settings.RUN_DIR / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(f"{kind}:{name}".encode()).hexdigest()[:24]
    with open(locks / f"{digest}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def staging_dir(job: Job, purpose: str) -> Path:
    """An empty scratch folder for this job, inside the data dir."""
    path = archive.staging_root() / f"{job.pk}-{purpose}"
    remove_tree(path)
    path.mkdir(parents=True, mode=0o700)
    return path


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def clean_staging_at_start() -> None:
    root = archive.staging_root()
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name != "tmp":
                remove_tree(entry)
    remove_tree(root / "tmp")


def tree_size(path: Path) -> int:
    """Bytes of regular files under path (hardlinks counted once)."""
    seen, total = set(), 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            entries = list(current.iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.lstat()
            except OSError:
                continue
            if entry.is_dir() and not entry.is_symlink():
                stack.append(entry)
            elif (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size if entry.is_file() else 0
    return total
