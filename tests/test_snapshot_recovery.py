"""The archive survives a worker killed mid-job; a passphrase really encrypts it."""

import json
import os
import re
import signal
import subprocess
import time

from tests.test_snapshots import new_volume, snapshot_volume, wait_job

PASSPHRASE = "correct horse battery staple for the archive"


def restic(node, *args, passphrase=PASSPHRASE):
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("RESTIC")
    }
    env.update(
        RESTIC_REPOSITORY=str(node.data_dir / "archive"), RESTIC_PASSWORD=passphrase
    )
    return subprocess.run(
        ["restic", "--no-cache", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def fill(root, megabytes: int) -> None:
    for index in range(megabytes // 20):
        (root / f"chunk-{index:03d}.bin").write_bytes(os.urandom(20 * 1024 * 1024))


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found.append(int(entry))
    return found


def kill_worker(node) -> None:
    """SIGKILL the Celery worker and its pool processes, as an OOM kill would."""
    worker = node.child_pid("worker")
    for pid in [*children(worker), worker]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for_phase(
    node, url: str, phase_start: str, moving: bool = True, timeout: float = 120
) -> dict:
    """Wait until the job is in the named phase (and reports bytes, if moving)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = node.get(url).json()
        progress = job["progress"]
        if progress["phase"].startswith(phase_start) and (
            progress["bytesDone"] > 0 or not moving
        ):
            return job
        assert job["status"] in ("queued", "running"), job
        time.sleep(0.1)
    raise AssertionError(f"job never reached {phase_start!r}: {job}")


def start_async(node, path: str, body: dict) -> str:
    response = node.post(path, body, headers={"Prefer": "respond-async"})
    assert response.status_code == 202, response.text
    return response.headers["Location"]


def assert_archive_checks(node) -> None:
    checked = restic(node, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_worker_killed_mid_snapshot_and_mid_restore(private_stack):
    node = private_stack
    node.extra_env["CORESTORE_ARCHIVE_PASSPHRASE"] = PASSPHRASE
    node.start()
    name, root = new_volume(node)
    fill(root, 400)

    # Killed while restic archives: the job ends failed or completes on retry.
    url = start_async(node, "/volumes/snapshot", {"name": name, "snapshotName": "k"})
    wait_for_phase(node, url, "archiving")
    kill_worker(node)
    job = wait_job(node, url)
    assert job["status"] in ("failed", "succeeded"), job
    assert any("died" in line for line in job["log"]), job["log"]
    if job["status"] == "succeeded":
        assert job["attempts"] == 2
    assert_archive_checks(node)
    good = snapshot_volume(node, name, "after-kill")

    # Killed while restoring: same, and a retry leaves the exact tree.
    expected = sorted(os.listdir(root))
    for path in list(root.iterdir())[:5]:
        path.unlink()
    (root / "stray").write_text("x")
    url = start_async(
        node, "/volumes/restore", {"name": name, "snapshotId": good["snapshotId"]}
    )
    # A restore reports its bytes every two seconds: too late to catch it.
    wait_for_phase(node, url, "restoring", moving=False)
    kill_worker(node)
    job = wait_job(node, url)
    assert job["status"] in ("failed", "succeeded"), job
    assert any("died" in line for line in job["log"]), job["log"]
    if job["status"] == "succeeded":
        assert sorted(os.listdir(root)) == expected
    assert_archive_checks(node)
    snapshot_volume(node, name, "after-second-kill")

    # Nothing of the interrupted tries is left behind.
    assert not [p for p in (node.data_dir / "staging").iterdir() if p.name != "tmp"]
    assert restic(node, "list", "locks").stdout.strip() == ""


def test_passphrase_encrypts_the_archive_and_is_never_logged(private_stack):
    node = private_stack
    node.extra_env["CORESTORE_ARCHIVE_PASSPHRASE"] = PASSPHRASE
    node.start()
    archive = node.get("/health").json()["archive"]
    assert archive["passphrase"] == "CORESTORE_ARCHIVE_PASSPHRASE"
    name, root = new_volume(node)
    (root / "secret.txt").write_text("the plans")
    snapshot = snapshot_volume(node, name)

    listed = restic(node, "snapshots", "--json")
    assert listed.returncode == 0, listed.stderr
    assert snapshot["snapshotId"] in listed.stdout
    for wrong in ("", "wrong passphrase", derived_key(node)):
        refused = restic(node, "snapshots", passphrase=wrong)
        assert refused.returncode != 0
        assert snapshot["snapshotId"] not in refused.stdout
    # Nothing in the repository is plaintext.
    for path in (node.data_dir / "archive").rglob("*"):
        if path.is_file():
            assert b"the plans" not in path.read_bytes()

    logs = [*(node.data_dir / "log").glob("*.log"), node.output_path]
    for path in logs:
        assert PASSPHRASE not in path.read_text(errors="replace"), path
    job = node.get("/jobs").json()["jobs"][0]
    assert PASSPHRASE not in str(node.get(job["url"]).json())


def derived_key(node) -> str:
    from corestore_project import derive

    secret = (node.data_dir / "master.secret").read_text().strip()
    return derive.derive(secret, "archive-passphrase", "node")


def test_jobs_of_a_crashed_stack_are_failed_at_the_next_start(private_stack):
    node = private_stack
    node.start()
    name, root = new_volume(node)
    fill(root, 300)
    url = start_async(node, "/volumes/snapshot", {"name": name, "snapshotName": "c"})
    wait_for_phase(node, url, "archiving")

    # The whole node dies at once (power loss, OOM of the container).
    node.kill_leftovers()
    node.start()

    job = node.get(url).json()
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "interrupted"
    assert not [p for p in (node.data_dir / "staging").iterdir() if p.name != "tmp"]
    snapshot_volume(node, name, "after-crash")
    checked = restic(node, "check", passphrase=derived_key(node))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_retry_waits_for_a_lock_held_beside_it(private_stack):
    node = private_stack
    node.extra_env["CORESTORE_ARCHIVE_PASSPHRASE"] = PASSPHRASE
    node.start()
    name, root = new_volume(node)
    fill(root, 300)
    url = start_async(node, "/volumes/snapshot", {"name": name, "snapshotName": "l"})
    job_id = node.get(url).json()["id"]
    wait_for_phase(node, url, "archiving")

    # What a try killed after restic saved its snapshot leaves behind...
    leftover = restic(
        node, "backup", "--tag", f"job={job_id}", str(root / "chunk-000.bin")
    )
    assert leftover.returncode == 0, leftover.stderr
    # ...and a restic of another job that holds the archive while the retry
    # wants to forget that snapshot.
    holder = subprocess.Popen(
        ["restic", "--no-cache", "backup", "--stdin", "--tag", "holder"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("RESTIC")},
            "RESTIC_REPOSITORY": str(node.data_dir / "archive"),
            "RESTIC_PASSWORD": PASSPHRASE,
        },
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        kill_worker(node)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = node.get(url).json()
            if any("locked" in line for line in job["log"]):
                break
            assert job["status"] in ("queued", "running"), job
            time.sleep(0.2)
        else:
            raise AssertionError(f"the retry never met the lock: {job}")
    finally:
        holder.communicate(b"held", timeout=60)

    job = wait_job(node, url)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    # The leftover, and the first try's own snapshot if restic saved it before
    # the kill: either way only the retry's snapshot may remain.
    assert any(
        re.search(r"forgot [12] snapshot\(s\) of an interrupted try", line)
        for line in job["log"]
    ), job["log"]
    tagged = restic(node, "snapshots", "--json", "--tag", f"job={job_id}")
    assert [snap["id"] for snap in json.loads(tagged.stdout)] == [
        job["result"]["snapshotId"]
    ]
