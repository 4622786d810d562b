"""Celery tasks: one per job kind, each taking only the job's id.

A task claims its job atomically and does nothing when the job is already
claimed or finished, so a redelivered message (acks_late after a crash) is
harmless. Failures end the job failed with a message; nothing is retried
automatically except a job whose worker died (see jobs.claim).
"""

import logging

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready
from django.conf import settings

from corestore_project.celery import app
from corestore_project.logs import current_context
from snapshots import archive, jobs, resource_ops, volume_ops
from snapshots.models import Job
from snapshots.restic import CommandFailed

logger = logging.getLogger(__name__)

TIME_LIMIT = settings.JOB_TIME_LIMIT


def run_job(job_id: str, operation) -> None:
    current_context.set(f"job:{job_id[:8]}")
    job = jobs.claim(job_id)
    if job is None:
        logger.info("job %s is claimed or finished already; skipped", job_id)
        return

    jobs.append_log(job, "started (attempt %d)", job.attempts)
    try:
        result = operation(job)
    except jobs.JobError as exc:
        jobs.fail(job, exc.code, str(exc))
    except CommandFailed as exc:
        jobs.fail(job, "archive_error", str(exc))
    except SoftTimeLimitExceeded:
        jobs.fail(job, "timeout", f"stopped after the {TIME_LIMIT} s time limit")
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        jobs.fail(job, "internal_error", f"{type(exc).__name__}: {exc}")
    else:
        jobs.succeed(job, result)


TASK_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "soft_time_limit": TIME_LIMIT,
    "time_limit": TIME_LIMIT + 120,
}


@app.task(name="snapshots.snapshot_volume", **TASK_OPTIONS)
def snapshot_volume(job_id: str):
    run_job(job_id, volume_ops.snapshot_volume)


@app.task(name="snapshots.restore_volume", **TASK_OPTIONS)
def restore_volume(job_id: str):
    run_job(job_id, volume_ops.restore_volume)


@app.task(name="snapshots.snapshot_resources", **TASK_OPTIONS)
def snapshot_resources(job_id: str):
    run_job(job_id, resource_ops.snapshot_resources)


@app.task(name="snapshots.restore_resources", **TASK_OPTIONS)
def restore_resources(job_id: str):
    run_job(job_id, resource_ops.restore_resources)


TASKS = {
    Job.Kind.SNAPSHOT_VOLUME: snapshot_volume,
    Job.Kind.RESTORE_VOLUME: restore_volume,
    Job.Kind.SNAPSHOT_RESOURCES: snapshot_resources,
    Job.Kind.RESTORE_RESOURCES: restore_resources,
}


@worker_ready.connect
def _resume_orphaned_jobs(**kwargs):
    try:
        repo = archive.repository()
        if repo.is_initialised():
            # A killed worker's restic left its lock: only dead owners' go.
            repo.unlock()
        count = jobs.resume_orphans()
    except Exception:
        logger.exception("could not look for jobs left by a killed worker")
        return
    if count:
        logger.warning("re-sent %d job(s) left unfinished by a stopped worker", count)
