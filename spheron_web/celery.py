from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spheron_web.settings")

app = Celery("spheron_web")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()  # tasks.py of each installed app
app.autodiscover_tasks(["spheron_web"])  # the project package is not an installed app
