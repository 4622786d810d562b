"""Restoring a volume that a container of the real Docker daemon has mounted.

The container keeps the volume's folder open for its whole life (its mount
holds the folder's inode), so the restore must change files inside that same
folder; a restore that swapped the folder would leave the container on the old
data.
"""

import secrets

import pytest

from tests.stackrunner import Stack

pytest_plugins = ["tests.dockerd"]

pytestmark = pytest.mark.docker

HOLD = 'trap "exit 0" TERM; while true; do sleep 0.2; done'


@pytest.fixture(scope="module")
def node():
    stack = Stack()
    try:
        stack.start()
        yield stack
    finally:
        stack.cleanup()


@pytest.fixture(scope="module")
def docker(node, dockerd):
    """The daemon, set up after the stack and so torn down before it."""
    return dockerd


def in_container(docker, container: str, script: str) -> str:
    return docker.docker("exec", container, "sh", "-c", script).stdout


def test_mounted_container_sees_the_restored_files(docker, node):
    name = f"sd-{secrets.token_hex(4)}"
    docker.docker("volume", "create", "--driver", node.plugin_name, name)
    holder = docker.docker(
        "run", "-d", "--network", "none", "-v", f"{name}:/data", docker.image,
        "sh", "-c", HOLD,
    ).stdout.strip()  # fmt: skip
    try:
        in_container(
            docker,
            holder,
            "echo v1 > /data/app.conf && mkdir -p /data/uploads/2024 && "
            "echo photo > /data/uploads/2024/a.jpg && chmod 600 /data/app.conf",
        )
        response = node.post(
            "/volumes/snapshot", {"name": name, "snapshotName": "before-deploy"}
        )
        assert response.status_code == 200, response.text
        snapshot_id = response.json()["snapshotId"]

        in_container(
            docker,
            holder,
            "echo v2-broken > /data/app.conf && rm -r /data/uploads && "
            "echo junk > /data/migrated.tmp",
        )
        response = node.post(
            "/volumes/restore", {"name": name, "snapshotId": snapshot_id}
        )
        assert response.status_code == 200, response.text

        # The same, still running container sees the snapshot's tree.
        assert in_container(docker, holder, "cat /data/app.conf") == "v1\n"
        assert in_container(docker, holder, "cat /data/uploads/2024/a.jpg") == (
            "photo\n"
        )
        listing = in_container(docker, holder, "ls -A /data").split()
        assert sorted(listing) == ["app.conf", "uploads"]
        mode = in_container(docker, holder, "stat -c %a /data/app.conf").strip()
        assert mode == "600"
    finally:
        docker.docker("rm", "-f", holder, check=False)
        docker.docker("volume", "rm", name, check=False)
