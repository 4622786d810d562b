import os

from celery import Celery, signals

from corestore_project.logs import current_context

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "corestore_project.settings")

app = Celery("corestore")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
def _tag_task_logs(task_id=None, **kwargs):
    # Every line a task logs carries its id, like request lines carry theirs;
    # a task may narrow it further (a job id) with current_context itself.
    current_context.set(f"task:{(task_id or '-')[:12]}")


@signals.task_postrun.connect
def _untag_task_logs(**kwargs):
    current_context.set("-")
