"""A private Docker daemon for tests, and the `dockerd` fixture that runs one.

The daemon lives in a temporary folder (data root, exec root, API socket, pid
file) and runs with every network feature off (no bridge, no iptables, no IP
forwarding or masquerading), so it leaves the host's network alone. It still
finds legacy volume plugins in /run/docker/plugins, like any daemon.

Stopping it is by its own pid: SIGTERM, then SIGKILL. Whatever survives that
(its containerd, the shims and the containers under them) is found through
the private folder named on their command lines, never by process name, and
killed too; mounts left under the folder are detached before it is deleted.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

IMAGE = "bb:local"


def docker_client() -> str | None:
    # The docker.io package's client sits beside its daemon and speaks its API
    # version; another client earlier on PATH may be newer than the daemon.
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class Dockerd:
    def __init__(self, base_dir: Path | None = None):
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="dockerd-"))
        self.socket = self.base_dir / "docker.sock"
        self.log_path = self.base_dir / "dockerd.log"
        self.process = None
        self.client = docker_client()
        self.image = None

    @property
    def env(self) -> dict:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def command(self) -> list[str]:
        root = self.base_dir
        return [
            shutil.which("dockerd") or "dockerd",
            "--data-root",
            str(root / "root"),
            "--exec-root",
            str(root / "exec"),
            "-H",
            f"unix://{self.socket}",
            "--pidfile",
            str(root / "docker.pid"),
            # Leave the host's network alone: no bridge, no iptables rules,
            # no forwarding or NAT switched on.
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--bridge=none",
        ]

    def start(self, timeout: float = 60):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited early:\n{self.log_tail()}")
            ready = self.docker("version", check=False, timeout=10)
            if ready.returncode == 0:
                return self
            time.sleep(0.3)
        raise RuntimeError(f"dockerd not ready:\n{self.log_tail()}")

    def docker(self, *args, check=True, timeout=120, input=None):
        """Run the docker client against this daemon; a CompletedProcess."""
        result = subprocess.run(
            [self.client, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def build_busybox_image(self, tag: str = IMAGE):
        """Import a one-binary image: static busybox and its applet links."""
        busybox = shutil.which("busybox")
        if busybox is None:
            raise RuntimeError("busybox is not installed (busybox-static)")
        rootfs = self.base_dir / "rootfs"
        (rootfs / "bin").mkdir(parents=True, exist_ok=True)
        for folder in ("tmp", "data", "etc", "proc", "sys", "dev"):
            (rootfs / folder).mkdir(exist_ok=True)
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        applets = subprocess.run(
            [busybox, "--list"], capture_output=True, text=True, check=True
        ).stdout.split()
        for applet in applets:
            link = rootfs / "bin" / applet
            if not link.exists():
                link.symlink_to("busybox")

        archive = self.base_dir / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        self.docker("import", str(archive), tag)
        self.image = tag
        return tag

    def stop(self, timeout: float = 30, remove_containers: bool = False):
        """SIGTERM the daemon, SIGKILL it after timeout, then kill leftovers."""
        if self.process is None:
            return
        if remove_containers and self.process.poll() is None:
            self._remove_containers()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._kill_leftovers()
        self.process = None

    def restart(self, timeout: float = 60):
        self.stop()
        return self.start(timeout)

    def _remove_containers(self):
        try:
            listed = self.docker("ps", "-aq", check=False, timeout=30)
            ids = listed.stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False, timeout=60)
        except subprocess.TimeoutExpired:
            pass

    def _kill_leftovers(self):
        """containerd, shims and containers that outlived the daemon."""
        marker = str(self.base_dir)
        for _ in range(20):
            pids = descendants(processes_mentioning(marker))
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)

    def cleanup(self):
        try:
            self.stop(remove_containers=True)
        finally:
            detach_mounts_under(self.base_dir)
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""


def _proc_entries():
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name), entry


def processes_mentioning(text: str) -> set[int]:
    found = set()
    for pid, entry in _proc_entries():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmdline and pid != os.getpid():
            found.add(pid)
    return found


def descendants(roots: set[int]) -> list[int]:
    """roots and all their children, children first."""
    children = {}
    for pid, entry in _proc_entries():
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may hold spaces: split after it.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(pid)
    ordered, pending = [], list(roots)
    while pending:
        pid = pending.pop()
        ordered.append(pid)
        pending.extend(children.get(pid, []))
    return list(reversed(ordered))


def detach_mounts_under(folder: Path):
    """Lazily unmount overlay and netns mounts a killed daemon left behind."""
    prefix = str(folder)
    mounts = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def dockerd_available() -> str | None:
    """Why the daemon cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the Docker daemon needs root"
    for tool in ("dockerd", "busybox"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make setup-test installs it)"
    if docker_client() is None:
        return "the docker client is not installed"
    return None


@pytest.fixture(scope="module")
def dockerd():
    """A private, running Docker daemon with the bb:local busybox image.

    Stopped with everything it started at the end of the module, also when a
    test fails.
    """
    missing = dockerd_available()
    if missing:
        pytest.skip(missing)
    daemon = Dockerd()
    try:
        daemon.start()
        daemon.build_busybox_image()
        yield daemon
    finally:
        daemon.cleanup()
