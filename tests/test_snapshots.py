"""Volume snapshots and restores, jobs, and the archive, on a running stack."""

import hashlib
import os
import secrets
import time
from pathlib import Path

import pytest

from tests.plugin_client import PluginClient

SNAPSHOT_FIELDS = {
    "capability",
    "resourceName",
    "snapshotId",
    "originalSize",
    "storedSize",
    "createdAt",
    "tags",
}
NON_UTF8 = b"caf\xe9-\xff.txt"
NS_MTIME = 1_234_567_890_123_456_789


def new_volume(node, prefix="snap") -> tuple[str, Path]:
    name = f"{prefix}-{secrets.token_hex(4)}"
    assert PluginClient(node.plugin_socket).create(name) == {"Err": ""}
    mountpoint = node.data_dir / "volumes" / name / "data"
    assert mountpoint.is_dir()
    return name, mountpoint


def build_tree(root: Path) -> None:
    """Every kind of metadata a volume snapshot must keep."""
    os.chown(root, 1001, 1002)
    os.chmod(root, 0o750)
    (root / "plain.txt").write_text("plain contents\n")
    os.chown(root / "plain.txt", 1001, 1002)
    os.chmod(root / "plain.txt", 0o640)
    os.setxattr(root / "plain.txt", "user.origin", b"snapshot-test")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o4755)
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "sub" / "deep" / "blob.bin").write_bytes(os.urandom(300_000))
    os.link(root / "plain.txt", root / "sub" / "hardlink.txt")
    (root / "shared").mkdir(mode=0o2775)
    os.chmod(root / "shared", 0o2775)
    os.chown(root / "shared", 0, 1002)
    os.setxattr(root / "shared", "user.dir", b"on a folder")
    (root / "empty").mkdir()
    os.symlink("plain.txt", root / "link")
    os.symlink("does/not/exist", root / "dangling")
    os.symlink("sub/deep", root / "dirlink")
    (root.joinpath(os.fsdecode(NON_UTF8))).write_bytes(b"latin-1 name")
    os.utime(root / "sub" / "deep" / "blob.bin", ns=(NS_MTIME, NS_MTIME))
    os.utime(root / "plain.txt", ns=(NS_MTIME + 7, NS_MTIME + 7))
    os.utime(root / "link", ns=(NS_MTIME, NS_MTIME), follow_symlinks=False)
    os.utime(root / "empty", ns=(NS_MTIME, NS_MTIME))


def damage_tree(root: Path) -> None:
    """Change, add and delete: what a bad deploy might do."""
    with open(root / "plain.txt", "a") as handle:  # also changes the hardlink
        handle.write("appended\n")
    os.chmod(root / "run.sh", 0o600)
    os.chown(root / "shared", 5, 5)
    os.removexattr(root / "plain.txt", "user.origin")
    (root / "sub" / "deep" / "blob.bin").unlink()
    (root / "sub" / "hardlink.txt").unlink()
    (root / "sub" / "hardlink.txt").write_text("no longer a link")
    (root / "empty").rmdir()
    (root / "link").unlink()
    os.symlink("run.sh", root / "link")
    root.joinpath(os.fsdecode(NON_UTF8)).unlink()
    (root / "added.txt").write_text("not in the snapshot")
    (root / "added-dir" / "x").mkdir(parents=True)
    os.chmod(root, 0o777)


def manifest(root: Path) -> dict:
    """Every attribute of every entry, keyed by its path (bytes)."""
    entries, inodes = {}, {}
    for current, dirs, files in os.walk(bytes(root)):
        for name in dirs + files:
            path = os.path.join(current, name)
            entries[os.path.relpath(path, bytes(root))] = path
    result = {b".": describe(bytes(root), None)}
    for rel, path in sorted(entries.items()):
        info = os.lstat(path)
        inodes.setdefault(info.st_ino, []).append(rel)
        result[rel] = describe(path, info)
    for entry in result.values():
        if "ino" in entry:
            entry["links"] = sorted(inodes[entry.pop("ino")])
    return result


def describe(path: bytes, info) -> dict:
    info = info or os.lstat(path)
    entry = {
        "mode": info.st_mode,
        "uid": info.st_uid,
        "gid": info.st_gid,
        "mtime_ns": info.st_mtime_ns,
        "xattrs": {
            key: os.getxattr(path, key, follow_symlinks=False)
            for key in sorted(os.listxattr(path, follow_symlinks=False))
        },
    }
    if os.path.islink(path):
        entry["target"] = os.readlink(path)
    elif os.path.isfile(path):
        entry["sha256"] = hashlib.sha256(open(path, "rb").read()).hexdigest()
        entry["ino"] = info.st_ino
    return entry


def wait_job(node, url: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = node.get(url).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job not finished: {job}")


def snapshot_volume(node, name, snapshot_name="before-deploy", **extra) -> dict:
    response = node.post(
        "/volumes/snapshot", {"name": name, "snapshotName": snapshot_name, **extra}
    )
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_volume_round_trip_keeps_every_attribute(stack):
    name, root = new_volume(stack)
    build_tree(root)
    before = manifest(root)
    root_inode = os.stat(root).st_ino

    snapshot = snapshot_volume(stack, name, tags={"release": "v41"})
    assert set(snapshot) == SNAPSHOT_FIELDS
    assert snapshot["capability"] == "volume"
    assert snapshot["resourceName"] == name
    assert len(snapshot["snapshotId"]) == 64
    assert snapshot["originalSize"] >= 300_000
    assert 0 < snapshot["storedSize"] < 2 * snapshot["originalSize"]
    assert abs(snapshot["createdAt"] - time.time() * 1000) < 120_000
    assert snapshot["tags"] == {
        "release": "v41",
        "capability": "volume",
        "serviceId": "",
        "resourceName": name,
        "snapshotName": "before-deploy",
    }

    damage_tree(root)
    assert manifest(root) != before
    response = stack.post(
        "/volumes/restore", {"name": name, "snapshotId": snapshot["snapshotId"]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["snapshotId"] == snapshot["snapshotId"]

    assert manifest(root) == before
    assert os.stat(root).st_ino == root_inode, "the folder itself was replaced"
    assert not list((stack.data_dir / "staging").glob("*-restore"))


def test_snapshots_are_listed_and_filtered(stack):
    name, root = new_volume(stack)
    other, _ = new_volume(stack)
    (root / "f").write_text("1")
    first = snapshot_volume(stack, name, "one")
    second = snapshot_volume(stack, name, "two")
    snapshot_volume(stack, other, "one")

    listed = stack.get("/snapshots", params={"volume": name}).json()["snapshots"]
    assert [snap["snapshotId"] for snap in listed] == [
        second["snapshotId"],
        first["snapshotId"],
    ]
    assert listed[1] == first
    by_name = stack.get(
        "/snapshots", params={"capability": "volume", "resourceName": other}
    ).json()["snapshots"]
    assert {snap["resourceName"] for snap in by_name} == {other}
    none = stack.get("/snapshots", params={"serviceId": "nobody"}).json()
    assert none == {"snapshots": []}


def test_async_snapshot_answers_202_with_the_job(stack):
    name, root = new_volume(stack)
    (root / "f").write_bytes(os.urandom(1000))

    response = stack.post(
        "/volumes/snapshot",
        {"name": name, "snapshotName": "async"},
        headers={"Prefer": "respond-async"},
    )
    assert response.status_code == 202, response.text
    url = response.headers["Location"]
    assert response.json()["url"] == url
    assert response.json()["job"]["status"] in ("queued", "running", "succeeded")

    job = wait_job(stack, url)
    assert job["status"] == "succeeded", job
    assert job["kind"] == "snapshot_volume"
    assert job["target"] == name
    assert job["result"]["resourceName"] == name
    assert job["progress"]["bytesDone"] == job["progress"]["bytesTotal"] == 1000
    assert job["startedAt"] <= job["finishedAt"]
    assert any("succeeded" in line for line in job["log"])

    listed = stack.get("/jobs", params={"target": name}).json()["jobs"]
    assert [entry["id"] for entry in listed] == [job["id"]]


def test_unknown_volume_snapshot_and_job_are_404(stack):
    name, root = new_volume(stack)
    other, other_root = new_volume(stack)
    (root / "keep").write_text("keep")
    (other_root / "x").write_text("x")
    other_snapshot = snapshot_volume(stack, other)
    jobs_before = len(stack.get("/jobs", params={"limit": 1000}).json()["jobs"])

    assert_error(
        stack.post("/volumes/snapshot", {"name": "no-such-volume"}), 404, "not_found"
    )
    assert_error(
        stack.post("/volumes/restore", {"name": name, "snapshotId": "0" * 64}),
        404,
        "not_found",
    )
    # A snapshot of another volume is not this volume's.
    assert_error(
        stack.post(
            "/volumes/restore",
            {"name": name, "snapshotId": other_snapshot["snapshotId"]},
        ),
        404,
        "not_found",
    )
    assert_error(
        stack.post(
            "/volumes/restore",
            {"name": "no-such-volume", "snapshotId": other_snapshot["snapshotId"]},
        ),
        404,
        "not_found",
    )
    unknown_job = "/jobs/11111111-1111-1111-1111-111111111111"
    assert_error(stack.get(unknown_job), 404, "not_found")
    assert_error(stack.post("/volumes/restore", {"name": name}), 400, "invalid")

    assert os.listdir(root) == ["keep"]
    jobs_after = len(stack.get("/jobs", params={"limit": 1000}).json()["jobs"])
    assert jobs_after == jobs_before


def test_caller_tags_cannot_replace_corestore_tags(stack):
    name, _ = new_volume(stack)
    response = stack.post(
        "/volumes/snapshot", {"name": name, "tags": {"capability": "database"}}
    )
    assert_error(response, 400, "invalid")


def test_health_names_the_archive_and_its_passphrase_source(stack):
    archive = stack.get("/health").json()["archive"]
    assert archive["status"] == "up"
    assert archive["passphrase"] == "derived from the master secret"
    assert archive["repository"] == str(stack.data_dir / "archive")


def test_second_restore_of_a_volume_while_one_runs_is_409(stack):
    name, root = new_volume(stack)
    for index in range(10):
        (root / f"part-{index}").write_bytes(os.urandom(10 * 1024 * 1024))
    snapshot = snapshot_volume(stack, name)
    body = {"name": name, "snapshotId": snapshot["snapshotId"]}

    first = stack.post("/volumes/restore", body, headers={"Prefer": "respond-async"})
    assert first.status_code == 202, first.text
    assert_error(stack.post("/volumes/restore", body), 409, "conflict")
    assert_error(stack.post("/volumes/snapshot", {"name": name}), 409, "conflict")

    assert wait_job(stack, first.headers["Location"])["status"] == "succeeded"
    assert stack.post("/volumes/restore", body).status_code == 200


def test_remove_of_a_volume_while_its_restore_runs_is_refused(stack):
    name, root = new_volume(stack)
    for index in range(10):
        (root / f"part-{index}").write_bytes(os.urandom(10 * 1024 * 1024))
    snapshot = snapshot_volume(stack, name)
    body = {"name": name, "snapshotId": snapshot["snapshotId"]}
    plugin = PluginClient(stack.plugin_socket)

    first = stack.post("/volumes/restore", body, headers={"Prefer": "respond-async"})
    assert first.status_code == 202, first.text
    job_id = first.json()["job"]["id"]
    refused = plugin.remove(name)

    assert refused["Err"] == f"volume {name} is being restored by job {job_id}"
    assert plugin.get(name)["Err"] == ""
    assert wait_job(stack, first.headers["Location"])["status"] == "succeeded"
    assert len(os.listdir(root)) == 10
    assert plugin.remove(name) == {"Err": ""}
    assert not root.exists()


@pytest.mark.parametrize(
    "tags",
    [
        {"x,serviceId=tenB": "v"},
        {"x,job=11111111-1111-1111-1111-111111111111": "v"},
        {"a=b": "v"},
        {"": "v"},
        {"k" * 65: "v"},
        {"release": "v1,serviceId=tenB"},
        {"release": "line\nbreak"},
        {"release": "bell\x07"},
        {"release": "v" * 257},
        ["x,serviceId=tenB=v"],
    ],
)
def test_tags_that_could_inject_restic_tags_are_400(stack, tags):
    name, _ = new_volume(stack)
    jobs_before = len(stack.get("/jobs", params={"target": name}).json()["jobs"])

    response = stack.post("/volumes/snapshot", {"name": name, "tags": tags})

    assert_error(response, 400, "invalid")
    assert response.json()["error"]["field"].startswith("tags")
    assert (
        len(stack.get("/jobs", params={"target": name}).json()["jobs"]) == jobs_before
    )
    assert stack.get("/snapshots", params={"resourceName": name}).json() == {
        "snapshots": []
    }


def test_tags_within_the_rules_are_kept(stack):
    name, _ = new_volume(stack)
    tags = {"release.v-4_1": "a b=c/é " + "v" * 200}
    assert (
        snapshot_volume(stack, name, tags=tags)["tags"]["release.v-4_1"]
        == (tags["release.v-4_1"])
    )
