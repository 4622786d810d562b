"""Snapshot and restore of one Docker volume's file tree.

restic archives the volume's `data` folder itself (not only its contents), so
the folder's own owner, mode and times are kept too. Restore never replaces
that folder: a running container holds its inode, and would go on seeing the
old tree. The snapshot is restored into a staging folder beside the archive and
then synced into the volume in place.
"""

import logging
import shutil
import subprocess
from pathlib import Path

from django.conf import settings

from snapshots import archive, common, jobs
from snapshots.models import Job, Snapshot
from snapshots.restic import CommandFailed, RunningCommand, child_command

logger = logging.getLogger(__name__)

# The top folder of every volume snapshot: the volume's mountpoint folder.
TREE_ROOT = "data"


class RsyncError(CommandFailed):
    program = "rsync"


def mountpoint(name: str) -> Path:
    return settings.DATA_DIR / "volumes" / name / TREE_ROOT


def volume_service_id(name: str) -> str | None:
    """The volume's owning serviceId ("" if none), or None when it does not exist."""
    from volumes.models import Volume

    volume = Volume.objects.filter(name=name).first()
    if volume is None or not mountpoint(name).is_dir():
        return None
    return volume.service_id or ""


def snapshot_volume(job: Job) -> dict:
    """Archive the volume's tree; answer the snapshot object.

    Steps: check the volume, forget leftovers of an interrupted try, run
    restic backup of the mountpoint folder (shared lock: snapshots may run
    together, never during a restore), index the snapshot.
    """
    name, params = job.target, job.params
    service_id = volume_service_id(name)
    if service_id is None:
        raise jobs.JobError("not_found", f"no volume named {name!r}")

    repo = archive.ensure_repository()
    common.clean_after_interrupted_try(repo, job)
    tags = {
        **params.get("tags", {}),
        "capability": Snapshot.Capability.VOLUME,
        "serviceId": service_id,
        "resourceName": name,
        "snapshotName": params["snapshotName"],
    }

    with common.target_lock("volume", name, exclusive=False):
        jobs.set_phase(job, "archiving the volume")
        with jobs.Progress(job) as progress:
            backup = repo.backup(
                [TREE_ROOT],
                cwd=mountpoint(name).parent,
                tags=common.restic_tags(tags, job),
                progress=progress.restic_status,
            )
    if backup.incomplete:
        jobs.append_log(
            job, "some files changed or vanished while archived: %s", backup.warnings
        )

    snapshot = common.record_snapshot(
        job,
        backup,
        capability=Snapshot.Capability.VOLUME,
        resource_name=name,
        service_id=service_id,
        snapshot_name=params["snapshotName"],
        tags=tags,
        archive_path=TREE_ROOT,
    )
    return snapshot.as_api()


def restore_volume(job: Job) -> dict:
    """Make the volume's tree equal to the snapshot's, in place.

    Steps: check the volume and the snapshot; take the volume's exclusive lock;
    restic restore into a staging folder; rsync it into the mountpoint with
    --delete (files are replaced one by one, the folder itself stays); remove
    the staging folder.
    """
    name = job.target
    snapshot = Snapshot.objects.filter(
        snapshot_id=job.params["snapshotId"],
        capability=Snapshot.Capability.VOLUME,
        resource_name=name,
    ).first()
    if snapshot is None:
        raise jobs.JobError("not_found", "no such snapshot of this volume")
    if volume_service_id(name) is None:
        raise jobs.JobError("not_found", f"no volume named {name!r}")

    repo = archive.ensure_repository()
    common.clean_after_interrupted_try(repo, job)
    target = mountpoint(name)
    staging = common.staging_dir(job, "restore")
    try:
        with common.target_lock("volume", name, exclusive=True):
            _restore_to_staging(job, repo, snapshot, staging)
            source = staging / snapshot.archive_path
            if not source.is_dir():
                raise jobs.JobError("corrupt", "the snapshot holds no volume tree")
            _sync_in_place(job, source, target)
    finally:
        common.remove_tree(staging)

    return {
        "name": name,
        "snapshotId": snapshot.snapshot_id,
        "restored": snapshot.as_api(),
        "bytes": snapshot.original_size,
    }


def _restore_to_staging(job, repo, snapshot, staging: Path) -> None:
    # restic 0.14 restore prints no progress: the staging folder's size is it.
    jobs.set_phase(job, "restoring from the archive", snapshot.original_size)
    with jobs.Progress(job, poll=lambda: common.tree_size(staging)):
        with repo.restore(snapshot.snapshot_id, staging) as running:
            running.check("restore")


def _sync_in_place(job, source: Path, target: Path) -> None:
    """rsync the restored tree over the volume's, keeping the target folder.

    -aHAX --numeric-ids: modes, owners by number (the container's users do not
    exist here), times, symlinks, hardlinks, ACLs, xattrs. --delete removes
    what the snapshot did not have. Files rsync judges unchanged (same size,
    mtime and attributes) are left alone.
    """
    rsync = shutil.which("rsync")
    if rsync is None:
        raise jobs.JobError("rsync_missing", "rsync is not installed")
    jobs.set_phase(job, "syncing into the volume")
    command = child_command(
        [
            rsync,
            "-aHAX",
            "--numeric-ids",
            "--delete",
            "--no-inc-recursive",
            # Hardlink a changed file from the staging tree instead of
            # copying it: the restored data is written once, by restic.
            # (On another filesystem rsync copies instead.)
            f"--link-dest={source}",
            f"{source}/",
            f"{target}/",
        ]
    )
    with jobs.Progress(job):
        with RunningCommand(command, stdout=subprocess.DEVNULL) as running:
            running.check("sync", error=RsyncError)
