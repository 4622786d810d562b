"""restic, driven as a subprocess with --json.

Written against restic 0.14 (Debian's), whose behaviour shapes this module:

- it cannot run without a password; the passphrase travels in the child's
  environment only, never in argv, a log line or an error message;
- every fatal error is exit 1 with text on stderr, so errors carry the last
  lines of stderr;
- the backup summary names the snapshot by its short id, so the full id is
  looked up afterwards;
- a killed run leaves its lock behind, which blocks `check` and `prune` until
  `unlock` removes it;
- `--stdin` saves a truncated snapshot, with exit 0, when the producer of the
  stream fails. Database and bucket dumps are therefore written to a folder
  first (the dumper reports its own failure before restic ever runs) and
  archived like a volume; nothing here uses --stdin.

Children get a parent-death signal: when a worker process is SIGKILLed, its
restic and rsync die with it instead of writing on as orphans.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

HOST = "corestore"
# Exit 3: the snapshot was saved, but some source files could not be read
# (on a live volume: files that vanished while the backup ran).
EXIT_INCOMPLETE = 3
STOP_GRACE_SECONDS = 10


class CommandFailed(RuntimeError):
    """A child failed; the message holds the command and the child's own words."""

    program = "command"

    def __init__(self, command: str, code: int, stderr: str):
        self.command = command
        self.code = code
        self.stderr = stderr
        detail = " | ".join(stderr.strip().splitlines()[-3:]) or "no output"
        super().__init__(f"{self.program} {command} failed (exit {code}): {detail}")


class ResticError(CommandFailed):
    program = "restic"


def restic_binary() -> str | None:
    return shutil.which("restic") or (
        "/usr/bin/restic" if os.path.exists("/usr/bin/restic") else None
    )


def child_command(command: list[str]) -> list[str]:
    """Prefix a command so that it dies with the process that started it."""
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--pdeathsig", "KILL", "--", *command]
    return command


@dataclass
class BackupResult:
    snapshot_id: str  # full id
    time: str  # RFC 3339, as restic prints it
    stored_size: int  # bytes of the blobs it references, as stored
    summary: dict
    incomplete: bool  # exit 3: some source files could not be read
    warnings: list[str]


class Repository:
    """One restic repository, opened with one passphrase."""

    def __init__(self, path: Path, passphrase: str, temp_dir: Path):
        self.path = Path(path)
        self._passphrase = passphrase
        self.temp_dir = Path(temp_dir)

    def __repr__(self):  # never show the passphrase
        return f"<Repository {self.path}>"

    def environment(self) -> dict:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("RESTIC_")
        }
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        env.update(
            {
                "RESTIC_REPOSITORY": str(self.path),
                "RESTIC_PASSWORD": self._passphrase,
                # restic assembles pack files in TMPDIR: keep them in the data
                # dir, on the archive's filesystem.
                "TMPDIR": str(self.temp_dir),
            }
        )
        return env

    def command(self, *args: str) -> list[str]:
        binary = restic_binary()
        if binary is None:
            raise ResticError(args[0], 127, "restic is not installed")
        # --no-cache: the repository is local, a cache would only add writes
        # outside the data dir.
        return child_command([binary, "--no-cache", *args])

    # Simple commands: run, wait, parse.
    def run(self, *args: str, timeout: float | None = None) -> str:
        process = subprocess.run(
            self.command(*args),
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
        if process.returncode != 0:
            raise ResticError(args[0], process.returncode, process.stderr)
        return process.stdout

    def run_json(self, *args: str, timeout: float | None = None):
        return json.loads(self.run(*args, "--json", timeout=timeout) or "null")

    def is_initialised(self) -> bool:
        return (self.path / "config").is_file()

    def init(self) -> None:
        # Repository version 2: compressed (zstd), readable by every newer restic.
        self.run("init", "--repository-version", "2")

    def unlock(self, remove_all: bool = False) -> None:
        args = ["unlock"] + (["--remove-all"] if remove_all else [])
        self.run(*args)

    def check(self) -> str:
        return self.run("check")

    def snapshots(self, tags: Iterable[str] = (), ids: Iterable[str] = ()) -> list:
        args = ["snapshots"]
        for tag in tags:
            args += ["--tag", tag]
        return self.run_json(*args, *ids) or []

    def find_saved(self, short_id: str, job_tag: str) -> dict:
        """The snapshot that a backup summary names by its short id.

        Looked up among the job's own snapshots: a short id alone may be
        ambiguous in a large archive.
        """
        for snapshot in self.snapshots(tags=[job_tag]):
            if snapshot["id"].startswith(short_id):
                return snapshot
        raise ResticError("snapshots", 1, f"snapshot {short_id} not found")

    def stored_size(self, snapshot_id: str) -> int:
        # raw-data: the compressed, encrypted size of every blob the snapshot
        # references, counted once.
        stats = self.run_json("stats", "--mode", "raw-data", snapshot_id)
        return int(stats.get("total_size", 0))

    def forget(self, snapshot_ids: Iterable[str]) -> None:
        ids = list(snapshot_ids)
        if ids:
            self.run("forget", *ids)

    # Long-running commands, with progress.
    def backup(
        self,
        paths: list[str],
        cwd: Path,
        tags: list[str],
        progress: Callable[[dict], None] | None = None,
    ) -> BackupResult:
        """Run `restic backup` of paths (relative to cwd); the saved snapshot.

        The job's own tag (job=<id>) must be among the tags: the full id is
        found through it.
        """
        job_tag = next(tag for tag in tags if tag.startswith("job="))
        args = ["backup", "--json", "--host", HOST]
        for tag in tags:
            args += ["--tag", tag]
        args += ["--", *paths]

        with RunningCommand(
            self.command(*args), env=self.environment(), cwd=cwd
        ) as running:
            summary = None
            for message in running.json_lines():
                kind = message.get("message_type")
                if kind == "status" and progress:
                    progress(message)
                elif kind == "summary":
                    summary = message
                    if progress:
                        processed = message.get("total_bytes_processed", 0)
                        progress({"total_bytes": processed, "bytes_done": processed})
            code = running.wait()

        if code not in (0, EXIT_INCOMPLETE) or summary is None:
            raise ResticError("backup", code, running.stderr_text())
        saved, stored_size = self._describe_saved(summary["snapshot_id"], job_tag)
        return BackupResult(
            snapshot_id=saved["id"],
            time=saved["time"],
            stored_size=stored_size,
            summary=summary,
            incomplete=code == EXIT_INCOMPLETE,
            warnings=running.stderr_lines()[-20:],
        )

    def _describe_saved(self, short_id: str, job_tag: str) -> tuple[dict, int]:
        """The new snapshot's listing and stored size, asked for side by side.

        Each restic run spends most of a second deriving the repository key;
        two at once halve what every job waits after its backup.
        """
        with ThreadPoolExecutor(max_workers=2) as pool:
            saved = pool.submit(self.find_saved, short_id, job_tag)
            size = pool.submit(self.stored_size, short_id)
            snapshot = saved.result()
            try:
                return snapshot, size.result()
            except ResticError:
                # The short id also prefixes an older snapshot's id.
                return snapshot, self.stored_size(snapshot["id"])

    def restore(self, snapshot_id: str, target: Path) -> RunningCommand:
        """Start `restic restore`; the caller waits on it (0.14 prints no progress)."""
        return RunningCommand(
            self.command("restore", snapshot_id, "--target", str(target)),
            env=self.environment(),
            cwd=target,
            stdout=subprocess.DEVNULL,
        )


class RunningCommand:
    """A child process whose stderr is collected in the background.

    Leaving the `with` block always ends the child: a task stopped by its time
    limit or an exception must not leave restic or rsync writing.
    """

    def __init__(self, command, env=None, cwd=None, stdout=subprocess.PIPE):
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
        self._stderr = deque(maxlen=200)
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _read_stderr(self):
        for raw in self.process.stderr:
            self._stderr.append(raw.decode(errors="replace").rstrip("\n"))

    def json_lines(self):
        for raw in self.process.stdout:
            line = raw.strip()
            if not line.startswith(b"{"):
                continue
            try:
                yield json.loads(line)
            except ValueError:
                continue

    def wait(self, timeout=None) -> int:
        code = self.process.wait(timeout=timeout)
        self._stderr_reader.join(timeout=5)
        return code

    def stop(self):
        # SIGTERM first: restic then removes its lock from the repository.
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def stderr_lines(self) -> list[str]:
        self._stderr_reader.join(timeout=5)
        return list(self._stderr)

    def stderr_text(self) -> str:
        return "\n".join(self.stderr_lines())

    def check(self, what: str, error=ResticError) -> None:
        code = self.wait()
        if code != 0:
            raise error(what, code, self.stderr_text())
