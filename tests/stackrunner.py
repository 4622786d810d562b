"""Starts and stops a real corestore node stack for the tests.

Each stack gets free loopback ports, its own data dir and its own plugin socket,
and runs in its own process group, so that stopping it (also when a test fails)
leaves nothing running and never touches processes that the tests did not start.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = Path("/run/docker/plugins")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    def __init__(self, data_dir=None, plugin_name=None, env=None):
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="cs-"))
        self.plugin_name = plugin_name or f"cstest-{secrets.token_hex(4)}"
        self.token = secrets.token_urlsafe(24)
        self.ports = {
            "control": free_port(),
            "s3": free_port(),
            "db": free_port(),
            "flower": free_port(),
        }
        self.extra_env = dict(env or {})
        self.process = None
        self.output_path = self.data_dir.parent / f"{self.data_dir.name}.out"

    @property
    def plugin_socket(self) -> Path:
        return PLUGIN_DIR / f"{self.plugin_name}.sock"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['control']}"

    @property
    def env(self) -> dict:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("CORESTORE_") and key != "DATABASE_URL"
        }
        env.update(
            {
                "CORESTORE_DATA_DIR": str(self.data_dir),
                "CORESTORE_BIND_ADDRESS": "127.0.0.1",
                "CORESTORE_PUBLIC_HOST": "127.0.0.1",
                "CORESTORE_CONTROL_PORT": str(self.ports["control"]),
                "CORESTORE_S3_PORT": str(self.ports["s3"]),
                "CORESTORE_DB_PORT": str(self.ports["db"]),
                "CORESTORE_FLOWER_PORT": str(self.ports["flower"]),
                "CORESTORE_VOLUME_PLUGIN_SOCKET": str(self.plugin_socket),
                "CORESTORE_API_TOKEN": self.token,
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 120):
        PLUGIN_DIR.mkdir(parents=True, exist_ok=True)
        output = open(self.output_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runstack"],
            cwd=ROOT,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output.close()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 120):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"stack exited early:\n{self.output_tail()}")
            try:
                last = requests.get(f"{self.url}/health", timeout=5)
                if last.status_code == 200:
                    return last.json()
            except requests.RequestException as exc:
                last = exc
            time.sleep(0.5)
        body = last.text if isinstance(last, requests.Response) else last
        raise RuntimeError(f"stack not healthy: {body}\n{self.output_tail()}")

    def output_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.output_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def supervisor_pid(self) -> int:
        return self.process.pid

    def child_pid(self, name: str) -> int:
        out = subprocess.run(
            [
                str(Path(sys.executable).with_name("supervisorctl")),
                "-c",
                str(self.data_dir / "run" / "supervisord.conf"),
                "pid",
                name,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout.strip())

    def stack_pids(self) -> list[int]:
        """Every live process of this stack.

        The stack starts in a session of its own. supervisord puts each child in
        a process group of its own (for stopasgroup), but the session is kept,
        so the session id finds them all, also after supervisord was killed.
        """
        if self.process is None:
            return []
        session = self.process.pid
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getsid(int(entry.name)) == session:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
        return pids

    def stop(self, timeout: float = 90) -> int | None:
        """SIGTERM, wait; SIGKILL whatever of the stack is left."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        code = self.process.poll()
        self.kill_leftovers()
        return code

    def kill_leftovers(self):
        for _ in range(50):
            pids = self.stack_pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        if self.process and self.process.poll() is None:
            self.process.wait()

    def cleanup(self):
        self.stop()
        self.plugin_socket.unlink(missing_ok=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.output_path.unlink(missing_ok=True)

    # Helpers for talking to the control API.
    def headers(self, **extra) -> dict:
        return {"Authorization": f"Bearer {self.token}", **extra}

    def get(self, path, **kwargs):
        kwargs.setdefault("timeout", 60)
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return requests.get(self.url + path, headers=headers, **kwargs)

    def post(self, path, json=None, **kwargs):
        kwargs.setdefault("timeout", 600)
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return requests.post(self.url + path, json=json, headers=headers, **kwargs)

    def delete(self, path, **kwargs):
        kwargs.setdefault("timeout", 60)
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return requests.delete(self.url + path, headers=headers, **kwargs)
