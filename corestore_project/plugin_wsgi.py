"""The Docker volume plugin's WSGI entry point, served on its unix socket only.

It is the same project with a URLconf that holds nothing but the VolumeDriver
routes, so the control port never answers them and the socket never answers
the control API.
"""

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

PLUGIN_URLCONF = "volumes.plugin_urls"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "corestore_project.settings")
os.environ["CORESTORE_URLCONF"] = PLUGIN_URLCONF

django_application = get_wsgi_application()

# The gunicorn master may have loaded the settings before this module (its
# logger class does), with the control API's URLconf; each request reads this
# setting, so pinning it here holds whatever the import order was.
settings.ROOT_URLCONF = PLUGIN_URLCONF


def application(environ, start_response):
    # dockerd sends an empty Host header. Django would then build the host from
    # gunicorn's SERVER_NAME, which is the socket's path, and refuse it with a
    # 400 as an invalid host name. A unix socket has no host name to check.
    if not environ.get("HTTP_HOST"):
        environ["HTTP_HOST"] = "volumeplugin"
    return django_application(environ, start_response)
