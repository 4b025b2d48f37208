"""The ASGI application: ``/ws`` goes to the openline hub, everything else to Django.

Run it with ``uvicorn chatsite.asgi:application`` from the project's directory.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_application = get_asgi_application()  # sets Django up: import the hub after it

from chat.hub import hub  # noqa: E402

from openline.hub.asgi import route  # noqa: E402

application = route({"/ws": hub.asgi()}, fallback=django_application)
