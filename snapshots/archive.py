"""The snapshot archive: one restic repository at <data>/archive.

Encrypted with CORESTORE_ARCHIVE_PASSPHRASE, or else with a key derived from
the master secret (restic has no unencrypted mode). Which of the two is in use
is shown in /health, never the value.
"""

import fcntl
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from corestore_project import derive
from snapshots.restic import Repository, ResticError, restic_binary

logger = logging.getLogger(__name__)

PASSPHRASE_FROM_SETTING = "CORESTORE_ARCHIVE_PASSPHRASE"
PASSPHRASE_DERIVED = "derived from the master secret"


def archive_dir() -> Path:
    return settings.DATA_DIR / "archive"


def staging_root() -> Path:
    """Scratch space for restores and dumps, on the data dir's filesystem."""
    return settings.DATA_DIR / "staging"


def state_path() -> Path:
    return settings.RUN_DIR / "archive-state.json"


def passphrase_source() -> str:
    return (
        PASSPHRASE_FROM_SETTING if settings.ARCHIVE_PASSPHRASE else PASSPHRASE_DERIVED
    )


def _passphrase() -> str:
    if settings.ARCHIVE_PASSPHRASE:
        return settings.ARCHIVE_PASSPHRASE
    return derive.derive(settings.MASTER_SECRET, "archive-passphrase", "node")


def repository() -> Repository:
    return Repository(archive_dir(), _passphrase(), staging_root() / "tmp")


@contextmanager
def _init_lock():
    settings.RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(settings.RUN_DIR / "archive-init.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_repository() -> Repository:
    """The repository, initialised on first use (under a lock: two jobs may race)."""
    repo = repository()
    if repo.is_initialised():
        return repo
    with _init_lock():
        if not repo.is_initialised():
            archive_dir().mkdir(parents=True, exist_ok=True)
            repo.init()
            logger.info("archive initialised at %s", archive_dir())
    return repo


def prepare_at_start() -> dict:
    """Initialise, clear stale locks and check the passphrase; record the outcome.

    Runs before any process of the stack starts, so every lock in the
    repository belongs to a restic that is gone (a crash or a killed worker).
    """
    state = {"checkedAt": int(time.time() * 1000), "passphrase": passphrase_source()}
    try:
        repo = ensure_repository()
        repo.unlock(remove_all=True)
        repo.run("cat", "config")  # fails on a wrong passphrase
        state.update(status="up")
    except ResticError as exc:
        state.update(status="down", reason=str(exc))
        logger.error("archive unusable: %s", exc)
    _write_state(state)
    return state


def _write_state(state: dict) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def health() -> dict:
    """The archive's entry in /health: cheap, from files only."""
    info = {
        "repository": str(archive_dir()),
        "passphrase": passphrase_source(),
        "restic": restic_binary(),
    }
    try:
        state = json.loads(state_path().read_text())
    except (OSError, ValueError):
        state = {}
    if not info["restic"]:
        return {"status": "down", "reason": "restic is not installed", **info}
    if not repository().is_initialised():
        return {"status": "down", "reason": "repository not initialised", **info}
    if state.get("status") == "down":
        return {"status": "down", "reason": state.get("reason", ""), **info}
    return {"status": "up", **info}
