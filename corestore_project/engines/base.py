import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings


class EngineUnavailable(RuntimeError):
    """The engine did not answer; the caller may retry once it is back."""


@dataclass
class ProcessSpec:
    """How the supervisor starts one engine process."""

    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    stop_signal: str = "TERM"
    stop_wait_seconds: int = 20
    # supervisord starts lower numbers first and stops them last: the API and
    # the worker go down before the engines and the broker they use.
    priority: int = 50


def venv_bin(name: str) -> str:
    """A console script installed beside the running interpreter."""
    return str(Path(sys.executable).with_name(name))


def connect_host() -> str:
    """Where this node's own processes reach an engine bound to BIND_ADDRESS."""
    bind = settings.BIND_ADDRESS
    if bind in ("0.0.0.0", "", "*"):
        return "127.0.0.1"
    if bind == "::":
        return "::1"
    return bind


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last_error = exc
        time.sleep(0.2)
    raise EngineUnavailable(f"{what} not ready after {timeout:.0f}s: {last_error}")


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path


class DatabaseEngine:
    name = "database"
    kind = ""
    embedded = False
    limits: list[str] = []

    def processes(self) -> list[ProcessSpec]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Work that must happen before the first supervised start."""

    def ready(self) -> bool:
        raise NotImplementedError

    def ensure_tenant(self, database: str, user: str, password: str) -> None:
        raise NotImplementedError

    def drop_tenant(self, database: str, user: str) -> None:
        raise NotImplementedError


class ObjectEngine:
    name = "objectstorage"
    kind = ""
    embedded = False
    limits: list[str] = []

    def processes(self) -> list[ProcessSpec]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Work that must happen before the first supervised start."""

    def ready(self) -> bool:
        raise NotImplementedError

    def ensure_tenant(self, bucket: str, access_key: str, service_id: str) -> None:
        raise NotImplementedError

    def drop_tenant(self, bucket: str, access_key: str, service_id: str) -> None:
        raise NotImplementedError

    def admin_client(self):
        """A minio SDK client with the engine's admin credentials."""
        from minio import Minio

        access_key, secret_key = self.admin_credentials()
        return Minio(
            f"{connect_host()}:{settings.S3_PORT}",
            access_key=access_key,
            secret_key=secret_key,
            secure=False,
            region=settings.REGION,
        )

    def admin_credentials(self) -> tuple[str, str]:
        from corestore_project import derive

        return derive.s3_admin_credentials(settings.MASTER_SECRET)
