"""The Docker volume plugin's WSGI entry point, served on its unix socket only.

It is the same project with a URLconf that holds nothing but the VolumeDriver
routes, so the control port never answers them and the socket never answers
the control API.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "corestore_project.settings")
os.environ["CORESTORE_URLCONF"] = "volumes.plugin_urls"

application = get_wsgi_application()
