import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "corestore_project.settings")

app = Celery("corestore")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
