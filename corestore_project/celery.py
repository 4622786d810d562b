import logging
import os

from celery import Celery, signals

from corestore_project.logs import current_context

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "corestore_project.settings")

logger = logging.getLogger("corestore.tasks")

# Message header naming the request (req:<id>) that sent a task.
ORIGIN_HEADER = "corestore_origin"

app = Celery("corestore")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
def _tag_task_logs(task_id=None, task=None, **kwargs):
    # Every line a task logs carries its id, like request lines carry theirs;
    # a task may narrow it further (a job id) with current_context itself.
    current_context.set(f"task:{(task_id or '-')[:12]}")
    origin = task.request.get(ORIGIN_HEADER) if task else None
    if origin:
        logger.info("%s%s sent by %s", task.name, task.request.argsrepr or "", origin)


@signals.task_postrun.connect
def _untag_task_logs(**kwargs):
    current_context.set("-")


@signals.before_task_publish.connect
def _carry_request_id(headers=None, **kwargs):
    # The request that queued the task, so that its lines and the task's can
    # be joined; the worker logs it when the task starts.
    origin = current_context.get()
    if headers is not None and origin.startswith("req:"):
        headers[ORIGIN_HEADER] = origin


@signals.before_task_publish.connect
def _readable_job_arguments(sender=None, headers=None, body=None, **kwargs):
    """Let Flower show which job a task runs, not only the job's bare id.

    Job tasks take the Job's primary key only; argsrepr (what Flower and the
    worker log display) gains the job's kind and target, which name a volume
    or a service, never a credential.
    """
    if not headers or not body or not str(sender).startswith("snapshots."):
        return
    args = body[0] if isinstance(body, tuple | list) else ()
    if len(args) != 1:
        return

    from django.apps import apps

    try:
        Job = apps.get_model("snapshots", "Job")
        job = Job.objects.filter(pk=args[0]).values("kind", "target").first()
    except Exception:  # noqa: BLE001 - a label must never stop a job being sent
        return
    if job:
        headers["argsrepr"] = f"(job={args[0]}, {job['kind']} of {job['target']!r})"
