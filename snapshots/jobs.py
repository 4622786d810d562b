"""The life of a Job row: create, claim, report progress, finish, recover.

A job moves queued -> running -> succeeded | failed. Every move is a
conditional UPDATE, so two deliveries of one task message (acks_late
redelivers after a crash) never run the job twice at once, and a finished job
is never run again.
"""

import logging
import os
import socket
import threading
import time

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from snapshots.models import Job

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
LOG_LIMIT = 64 * 1024
PROGRESS_INTERVAL = 1.0


class JobError(Exception):
    """A failure the API reports with its own code (not_found, conflict...)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str) -> bool:
    """Whether the worker process that claimed a job still exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        # Another host's worker (a renamed container?): nothing here can tell.
        return True
    if not pid.isdigit():
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def create(kind: str, target: str, service_id: str = "", **params) -> Job:
    return Job.objects.create(
        kind=kind, target=target, service_id=service_id, params=params
    )


def enqueue(job: Job) -> None:
    """Send the job's task once the row is committed."""
    from snapshots import tasks

    task = tasks.TASKS[job.kind]
    job_id = str(job.pk)
    transaction.on_commit(lambda: task.delay(job_id))


def claim(job_id) -> Job | None:
    """Take the job for this process, or None when it is not ours to run.

    A job still marked running whose owner process is gone (SIGKILL, OOM) is
    taken over: this delivery is the retry.
    """
    me, now = owner_id(), timezone.now()
    taken = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING,
        owner=me,
        started_at=now,
        updated_at=now,
        attempts=F("attempts") + 1,
    )
    if not taken:
        job = Job.objects.filter(pk=job_id).first()
        if job is None or job.status != Job.Status.RUNNING or owner_alive(job.owner):
            return None
        taken = Job.objects.filter(
            pk=job_id, status=Job.Status.RUNNING, owner=job.owner
        ).update(owner=me, updated_at=now, attempts=F("attempts") + 1)
        if not taken:
            return None
        append_log(job, "the previous worker died during the job; running it again")

    job = Job.objects.get(pk=job_id)
    if job.attempts > MAX_ATTEMPTS:
        fail(job, "gave_up", f"gave up after {MAX_ATTEMPTS} interrupted attempts")
        return None
    return job


def append_log(job: Job, message: str, *args) -> None:
    text = message % args if args else message
    stamp = timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    line = f"{stamp} {text}\n"
    logger.info("job %s: %s", job.pk, text)
    Job.objects.filter(pk=job.pk).update(log=_capped(job.log + line))
    job.log = _capped(job.log + line)


def _capped(log: str) -> str:
    return log if len(log) <= LOG_LIMIT else "...\n" + log[-LOG_LIMIT:]


def set_phase(job: Job, phase: str, total: int | None = None) -> None:
    """Start a step; its progress counts from zero (total None: not known yet)."""
    job.phase, job.bytes_done, job.bytes_total = phase, 0, total
    Job.objects.filter(pk=job.pk).update(
        phase=phase, bytes_done=0, bytes_total=total, updated_at=timezone.now()
    )
    append_log(job, "%s", phase)


class Progress:
    """Throttled progress writes, plus a heartbeat while nothing reports.

    Used as a context manager around a long step: `update()` may be called as
    often as restic prints; the row is written at most once a second.
    """

    def __init__(self, job: Job, poll=None, interval: float = PROGRESS_INTERVAL):
        self.job = job
        self.poll = poll
        self.interval = interval
        self._last = 0.0
        self._done = None
        self._total = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
        self._write()

    def update(self, done: int, total: int | None = None) -> None:
        self._done, self._total = done, total
        if time.monotonic() - self._last >= self.interval:
            self._write()

    def restic_status(self, status: dict) -> None:
        """A restic --json status line; the final one may omit bytes_done."""
        total = status.get("total_bytes")
        done = status.get("bytes_done", total if status.get("percent_done") == 1 else 0)
        self.update(done or 0, total)

    def _beat(self):
        # The heartbeat keeps updated_at fresh during silent steps (restore,
        # rsync), and polls a size when the step prints no progress itself.
        try:
            while not self._stop.wait(self.interval * 2):
                if self.poll:
                    try:
                        self._done = self.poll()
                    except OSError:
                        pass
                self._write()
        finally:
            # This thread's own database connection.
            connection.close()

    def _write(self):
        self._last = time.monotonic()
        changes = {"updated_at": timezone.now()}
        if self._done is not None:
            changes["bytes_done"] = self._done
            self.job.bytes_done = self._done
        if self._total is not None:
            changes["bytes_total"] = self._total
            self.job.bytes_total = self._total
        Job.objects.filter(pk=self.job.pk).update(**changes)


def succeed(job: Job, result: dict) -> None:
    now = timezone.now()
    Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(
        status=Job.Status.SUCCEEDED,
        result=result,
        finished_at=now,
        updated_at=now,
        phase="done",
    )
    append_log(job, "succeeded")


def fail(job: Job, code: str, message: str) -> None:
    now = timezone.now()
    Job.objects.filter(pk=job.pk).exclude(status=Job.Status.SUCCEEDED).update(
        status=Job.Status.FAILED,
        error_code=code,
        error=message,
        finished_at=now,
        updated_at=now,
    )
    append_log(job, "failed: %s", message)


def fail_interrupted_at_start() -> int:
    """Fail every job that a stopped or crashed stack left unfinished.

    At stack start no worker runs yet, so nothing can still be working on them;
    their HTTP callers are gone too.
    """
    now = timezone.now()
    count = Job.objects.filter(status__in=Job.ACTIVE).update(
        status=Job.Status.FAILED,
        error_code="interrupted",
        error="the stack stopped before the job finished; run it again",
        finished_at=now,
        updated_at=now,
    )
    if count:
        logger.warning("failed %d job(s) left unfinished by the last run", count)
    return count


def resume_orphans() -> int:
    """At worker start: run again what a killed worker left behind.

    A worker killed with SIGKILL leaves its jobs running with a dead owner,
    and its unacknowledged messages come back only after the broker's
    visibility timeout. Those jobs are queued again and re-sent now; a second
    delivery of a message later finds the job claimed or finished and skips it.
    """
    from snapshots import tasks

    resumed = 0
    for job in Job.objects.filter(status__in=Job.ACTIVE):
        if job.status == Job.Status.RUNNING:
            if owner_alive(job.owner):
                continue
            moved = Job.objects.filter(
                pk=job.pk, status=Job.Status.RUNNING, owner=job.owner
            ).update(status=Job.Status.QUEUED, owner="")
            if not moved:
                continue
            append_log(job, "the worker died during the job; queued again")
        tasks.TASKS[job.kind].delay(str(job.pk))
        resumed += 1
    return resumed
