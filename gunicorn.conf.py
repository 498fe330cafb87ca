"""gunicorn settings for production (`gunicorn spheron_web.wsgi:application`; gunicorn reads this file
from the working directory). Command-line flags override it.

The web workers are gthread workers: each request runs on one of a few threads, and node heartbeats
wait on Redis most of their time. CPython hands the GIL over every 5 ms by default, so a thread
whose Redis reply has arrived can wait up to 5 ms behind a busy neighbour, several times per
request: at 1,000 heartbeats/s on two workers that made p95 28 ms; with 1 ms it was 9 ms
(bench/README.md, heartbeats.py). GIL_SWITCH_INTERVAL_MS overrides it.
"""

import gc
import os
import sys

worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
_switch_interval = float(os.environ.get("GIL_SWITCH_INTERVAL_MS", "1")) / 1000


def post_fork(server, worker):
    sys.setswitchinterval(_switch_interval)


def post_worker_init(worker):
    # Django, the apps and their modules are loaded now and live as long as the worker: move them
    # out of the garbage collector's reach, so that its full collections scan only what requests
    # allocate (a full pass over everything stalled all of a worker's threads for tens of ms).
    gc.collect()
    gc.freeze()
