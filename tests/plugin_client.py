"""Talks to the volume plugin's unix socket the way the Docker daemon does.

The daemon posts JSON without a Content-Type header and with its own Accept
header; this client sends exactly that, so the tests see what dockerd sees.
"""

import http.client
import json
import socket
from pathlib import Path

DOCKER_ACCEPT = "application/vnd.docker.plugins.v1.2+json"


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float):
        super().__init__("plugin", timeout=timeout)
        self.unix_path = str(path)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class PluginClient:
    def __init__(self, socket_path: Path, timeout: float = 60):
        self.socket_path = socket_path
        self.timeout = timeout

    def raw(self, method: str, path: str, body: bytes | None = None):
        """(status, decoded JSON body) of one request."""
        connection = UnixConnection(self.socket_path, self.timeout)
        try:
            # dockerd's own headers: an empty Host, its Accept, no Content-Type.
            connection.request(
                method, path, body=body, headers={"Host": "", "Accept": DOCKER_ACCEPT}
            )
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    def call(self, method: str, body=None) -> dict:
        """POST /VolumeDriver.<method>; the decoded answer (status must be 200)."""
        payload = b"" if body is None else json.dumps(body).encode()
        status, answer = self.raw("POST", f"/VolumeDriver.{method}", payload)
        assert status == 200, (status, answer)
        return answer

    def create(self, name, opts=None):
        return self.call("Create", {"Name": name, "Opts": opts})

    def remove(self, name):
        return self.call("Remove", {"Name": name})

    def mount(self, name, mount_id):
        return self.call("Mount", {"Name": name, "ID": mount_id})

    def unmount(self, name, mount_id):
        return self.call("Unmount", {"Name": name, "ID": mount_id})

    def get(self, name):
        return self.call("Get", {"Name": name})

    def path(self, name):
        return self.call("Path", {"Name": name})

    def list(self):
        return self.call("List", {})
