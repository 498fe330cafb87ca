import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spheron_web.settings")
django_application = get_wsgi_application()

from providers.heartbeat_wsgi import NodeHeartbeatFastPath  # noqa: E402 (needs Django set up)

# Node heartbeats skip Django's request stack (providers/heartbeat_wsgi.py); the rest is Django.
application = NodeHeartbeatFastPath(django_application)
