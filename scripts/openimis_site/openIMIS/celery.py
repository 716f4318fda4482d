"""The Celery app the modules' `shared_task`s bind to.

Mutations are queued with `.delay()` as in production (the modules' async mode);
the lane runs no worker, so tasks run eagerly inside the request that queued them
(`CELERY_TASK_ALWAYS_EAGER` in settings)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openIMIS.settings")

app = Celery("openIMIS")
app.config_from_object("django.conf:settings", namespace="CELERY")
