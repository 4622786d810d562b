"""What the VolumeDriver calls do, independent of HTTP.

Every call that changes state runs in one transaction. On SQLite the project
starts transactions with BEGIN IMMEDIATE, so they take the write lock up front
and parallel calls for one volume run one after the other; on other databases
`select_for_update` locks the volume row. The unique (volume, mount ID)
constraint keeps a repeated Mount from counting twice. Within the plugin
process, writers also queue on a lock first (see write_transaction).
"""

import logging
import os
import re
import secrets
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import transaction

from volumes.models import Volume, VolumeMount, volume_dir, volumes_root

logger = logging.getLogger(__name__)

# Docker's own rule for volume names (its local driver refuses anything else),
# plus the 255-character limit of a single path component.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NAME_MAX_LENGTH = 255

SUPPORTED_OPTIONS = ("gid", "mode", "serviceId", "uid")
MODE_PATTERN = re.compile(r"(0o|0)?[0-7]{1,4}")
MAX_MODE = 0o1777
ID_PATTERN = re.compile(r"[0-9]{1,10}")
MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to chown

# Removed volumes are renamed to this prefix first; a name can never start
# with a dot, so it cannot clash with a volume.
TRASH_PREFIX = ".removed-"


# dockerd sends Mount and Unmount calls in parallel and the plugin serves them
# from threads of one process. SQLite lets one writer in at a time and makes
# the others poll with growing sleeps, which put whole seconds on the slowest
# calls; waiting on a lock in the process instead hands the write over at once.
_write_lock = threading.Lock()


@contextmanager
def write_transaction():
    with _write_lock, transaction.atomic():
        yield


class VolumeError(Exception):
    """A refusal that goes back to Docker in the `Err` field."""


class NoSuchVolume(VolumeError):
    def __init__(self, name: str):
        super().__init__(f"no such volume: {name}")


def validate_name(name) -> str:
    if not isinstance(name, str) or not name:
        raise VolumeError("a volume name is required")
    if len(name) > NAME_MAX_LENGTH:
        raise VolumeError(
            f"volume name is {len(name)} characters long; "
            f"at most {NAME_MAX_LENGTH} are allowed"
        )
    if len(name) < 2:
        raise VolumeError(
            f"volume name {name!r} is too short; "
            "names must be at least two characters long"
        )
    if not NAME_PATTERN.fullmatch(name):
        raise VolumeError(
            f"invalid volume name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return name


def parse_options(opts) -> dict:
    """Check the --opt values; return them as given, all strings."""
    if opts is None:
        return {}
    if not isinstance(opts, dict):
        raise VolumeError("Opts must be an object of option names to values")
    options = {str(key): str(value) for key, value in opts.items()}

    unknown = sorted(set(options) - set(SUPPORTED_OPTIONS))
    if unknown:
        raise VolumeError(
            f"unknown option {', '.join(map(repr, unknown))}; "
            f"supported options: {', '.join(SUPPORTED_OPTIONS)}"
        )

    for key in ("uid", "gid"):
        if key in options:
            _parse_id(key, options[key])
    if "mode" in options:
        _parse_mode(options["mode"])
    if "serviceId" in options:
        _check_service(options["serviceId"])
    return options


def _parse_id(key: str, value: str) -> int:
    if not ID_PATTERN.fullmatch(value) or int(value) > MAX_ID:
        raise VolumeError(f"option {key} must be a numeric id, not {value!r}")
    return int(value)


def _parse_mode(value: str) -> int:
    if not MODE_PATTERN.fullmatch(value):
        raise VolumeError(f"option mode must be octal like 0755, not {value!r}")
    mode = int(value.removeprefix("0o") or "0", 8)
    # setuid and setgid on the folder would hand its owner's ids to whatever
    # a container creates in it; the sticky bit (01000) is harmless.
    if mode > MAX_MODE:
        raise VolumeError(
            "option mode must be between 0 and 01777 "
            f"(no setuid or setgid bits), not {value!r}"
        )
    return mode


def _check_service(service_id: str):
    if not service_id or len(service_id) > 255:
        raise VolumeError("option serviceId must be 1 to 255 characters")

    # The provisioning app may not define its Service model (yet); without it
    # any serviceId is accepted and stored as given.
    try:
        service_model = apps.get_model("provisioning", "Service")
        service_model._meta.get_field("service_id")
    except (LookupError, FieldDoesNotExist):
        return
    if not service_model.objects.filter(service_id=service_id).exists():
        raise VolumeError(f"serviceId {service_id!r} is not a provisioned service")


def prepare_data_dir(volume: Volume) -> Path:
    """Create the volume's data folder if missing and apply uid/gid/mode.

    Ownership and mode are only set when the folder is created: afterwards
    they belong to the workload, which may have changed them on purpose.
    dockerd may still override them: on the first mount of an empty volume
    over a folder that exists in the image, it copies that folder's contents,
    owner and mode onto the volume (unless the mount says `nocopy`).
    """
    mountpoint = volume.mountpoint
    if mountpoint.is_dir():
        return mountpoint

    volume_dir(volume.name).mkdir(mode=0o700, parents=True, exist_ok=True)
    mountpoint.mkdir(mode=0o755, exist_ok=True)
    options = volume.options
    uid = _parse_id("uid", options["uid"]) if "uid" in options else -1
    gid = _parse_id("gid", options["gid"]) if "gid" in options else -1
    if uid != -1 or gid != -1:
        os.chown(mountpoint, uid, gid)
    # chmod, not mkdir's mode: the umask must not narrow what was asked for.
    os.chmod(mountpoint, _parse_mode(options.get("mode", "0755")))
    return mountpoint


def create_volume(name, opts) -> Volume:
    """Create the row and the data folder; an identical repeat is a no-op."""
    name = validate_name(name)
    options = parse_options(opts)

    # get_or_create catches the unique-name race where transactions do not
    # take the write lock up front.
    with write_transaction():
        volume, created = Volume.objects.select_for_update().get_or_create(
            name=name,
            defaults={"options": options, "service_id": options.get("serviceId", "")},
        )
        if not created and volume.options != options:
            raise VolumeError(
                f"volume {name} already exists with other options "
                f"({_describe(volume.options)})"
            )
        if created and volume.mountpoint.is_dir():
            # Left by a metadata database that was lost or reset: keeping
            # the files is the only choice that cannot destroy data.
            logger.warning("volume %s adopts its existing data folder", name)
        prepare_data_dir(volume)

    if created:
        logger.info("created volume %s (%s)", name, _describe(options))
    return volume


def _describe(options: dict) -> str:
    if not options:
        return "no options"
    return ", ".join(f"{key}={value}" for key, value in sorted(options.items()))


def _locked_volume(name) -> Volume:
    name = validate_name(name)
    volume = Volume.objects.select_for_update().filter(name=name).first()
    if volume is None:
        raise NoSuchVolume(name)
    return volume


def get_volume(name) -> Volume:
    volume = Volume.objects.filter(name=validate_name(name)).first()
    if volume is None:
        raise NoSuchVolume(name)
    return volume


def mount_volume(name, mount_id) -> Path:
    """Record one more holder of the volume and return its mountpoint."""
    mount_id = _mount_id(mount_id)
    with write_transaction():
        volume = _locked_volume(name)
        if not volume.mountpoint.is_dir():
            logger.warning("data folder of volume %s was missing; recreated", name)
        mountpoint = prepare_data_dir(volume)
        _, created = VolumeMount.objects.get_or_create(volume=volume, mount_id=mount_id)
        holders = volume.mounts.count()
    logger.info(
        "mounted volume %s for %s (%s holders)%s",
        name,
        mount_id[:12] or "-",
        holders,
        "" if created else "; ID already held",
    )
    return mountpoint


def unmount_volume(name, mount_id):
    """Drop one holder; an ID that holds nothing is ignored."""
    mount_id = _mount_id(mount_id)
    with write_transaction():
        volume = _locked_volume(name)
        deleted, _ = VolumeMount.objects.filter(
            volume=volume, mount_id=mount_id
        ).delete()
    if deleted:
        logger.info("unmounted volume %s for %s", name, mount_id[:12] or "-")
    else:
        logger.info("unmount of volume %s by unknown ID %s ignored", name, mount_id)


def _mount_id(mount_id) -> str:
    # Docker before 1.12 sent no ID; all such mounts then share the empty one.
    if mount_id is None:
        return ""
    if not isinstance(mount_id, str) or len(mount_id) > 255:
        raise VolumeError("ID must be a string of at most 255 characters")
    return mount_id


def remove_volume(name):
    """Delete a volume that no mount holds, with its data.

    Steps: lock the row, refuse while any ID holds it or a snapshot or
    restore job of it is queued or running, rename the folder
    aside, delete the row, commit, then delete the renamed folder. The rename
    happens under the lock, so a new volume of the same name created right
    after the commit gets a fresh folder, never the old files. If anything
    fails before the commit, the folder is renamed back.
    """
    name = validate_name(name)
    trash = None
    try:
        with write_transaction():
            volume = Volume.objects.select_for_update().filter(name=name).first()
            if volume is None:
                # Docker only removes what Get found, so this is a repeat or
                # a race with another Remove: the wanted state is reached.
                logger.info("remove of unknown volume %s ignored", name)
                return
            holders = volume.mounts.count()
            if holders:
                raise VolumeError(
                    f"volume {name} is in use ({holders} active mounts); "
                    "stop the containers that use it first"
                )
            _refuse_while_job_active(name)
            trash = _move_aside(name)
            volume.delete()
    except BaseException:
        if trash is not None:
            trash.rename(volume_dir(name))
        raise

    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    logger.info("removed volume %s", name)


def _refuse_while_job_active(name: str) -> None:
    # A restore would otherwise sync into a deleted folder and report success.
    from snapshots.models import Job

    job = (
        Job.objects.filter(
            kind__in=(Job.Kind.SNAPSHOT_VOLUME, Job.Kind.RESTORE_VOLUME),
            target=name,
            status__in=Job.ACTIVE,
        )
        .order_by("created_at")
        .first()
    )
    if job is not None:
        doing = "restored" if job.kind == Job.Kind.RESTORE_VOLUME else "snapshotted"
        raise VolumeError(f"volume {name} is being {doing} by job {job.pk}")


def _move_aside(name: str) -> Path | None:
    folder = volume_dir(name)
    if not folder.exists():
        return None
    # Not named after the volume: a 255-character name plus a prefix would
    # exceed the file name limit.
    trash = volumes_root() / f"{TRASH_PREFIX}{secrets.token_hex(8)}"
    folder.rename(trash)
    return trash


def discard_leftover_trash():
    """Delete folders of removals that a crash interrupted after the commit."""
    root = volumes_root()
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.name.startswith(TRASH_PREFIX):
            logger.info("deleting leftover %s", entry.name)
            shutil.rmtree(entry, ignore_errors=True)


def directory_size(path: Path) -> int:
    """Bytes of the files under path (apparent size, hard links once).

    Files may vanish while a container works in the volume; those are skipped.
    """
    total = 0
    seen = set()
    pending = [path]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
                continue
            if stat.st_nlink > 1:
                if (stat.st_dev, stat.st_ino) in seen:
                    continue
                seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_size
    return total
