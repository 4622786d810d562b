"""The volume plugin driven by the real Docker daemon.

One private dockerd (tests/dockerd.py) and one corestore stack serve the whole
module; the stack's plugin socket name is the driver name the daemon uses.
The daemon is stopped before the stack, so its final Unmount calls still
reach the plugin.
"""

import json
import os
import re
import secrets
import signal
import socket
import stat
import time

import pytest
import requests

from tests.plugin_client import PluginClient
from tests.stackrunner import Stack

pytest_plugins = ["tests.dockerd"]

pytestmark = pytest.mark.docker

# A container that holds its volume until stopped. busybox sh runs as PID 1,
# which ignores SIGTERM unless it traps it, so `docker stop` would wait.
HOLD = 'trap "exit 0" TERM; while true; do sleep 0.2; done'


ADMIN_PASSWORD = secrets.token_urlsafe(12)


@pytest.fixture(scope="module")
def node():
    stack = Stack(env={"CORESTORE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        stack.start()
        yield stack
    finally:
        stack.cleanup()


@pytest.fixture(scope="module")
def docker(node, dockerd):
    """The daemon, set up after the stack and so torn down before it."""
    return dockerd


def new_name(prefix="dv") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def inspect(docker, name) -> dict:
    return json.loads(docker.docker("volume", "inspect", name).stdout)[0]


def driver_volumes(docker, node) -> set[str]:
    # Other stacks' plugin sockets in /run/docker/plugins answer List too.
    listed = docker.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}")
    pairs = (line.split(" ", 1) for line in listed.stdout.splitlines())
    return {name for driver, name in pairs if driver == node.plugin_name}


def api_volume(node, name) -> dict | None:
    response = node.get(f"/volumes/{name}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.json()


def mountpoint(node, name):
    return node.data_dir / "volumes" / name / "data"


def run(docker, name, script, *flags):
    return docker.docker(
        "run",
        "--network",
        "none",
        *flags,
        "-v",
        f"{name}:/data",
        docker.image,
        "sh",
        "-c",
        script,
    )


def hold(docker, name) -> str:
    """Start a container that keeps the volume mounted; its id."""
    return run(docker, name, HOLD, "-d").stdout.strip()


def wait_for(check, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_create_ls_inspect_rm(docker, node):
    plain, tuned = new_name(), new_name()

    docker.docker("volume", "create", "--driver", node.plugin_name, plain)
    docker.docker(
        "volume",
        "create",
        "--driver",
        node.plugin_name,
        "--opt",
        "uid=1000",
        "--opt",
        "gid=1001",
        "--opt",
        "mode=0700",
        tuned,
    )

    assert driver_volumes(docker, node) >= {plain, tuned}
    info = inspect(docker, tuned)
    assert info["Driver"] == node.plugin_name
    assert info["Scope"] == "local"
    assert info["Mountpoint"] == str(mountpoint(node, tuned))
    assert info["Options"] == {"uid": "1000", "gid": "1001", "mode": "0700"}
    assert info["Status"] == {"mounts": 0}
    assert info["CreatedAt"]
    assert inspect(docker, plain)["Mountpoint"] == str(mountpoint(node, plain))

    folder = mountpoint(node, tuned).stat()
    assert (folder.st_uid, folder.st_gid) == (1000, 1001)
    assert stat.S_IMODE(folder.st_mode) == 0o700
    assert api_volume(node, tuned)["options"] == info["Options"]
    assert api_volume(node, plain)["options"] == {}

    docker.docker("volume", "rm", plain, tuned)
    assert not driver_volumes(docker, node) & {plain, tuned}
    assert api_volume(node, plain) is None and api_volume(node, tuned) is None
    assert not (node.data_dir / "volumes" / plain).exists()
    assert not (node.data_dir / "volumes" / tuned).exists()


def test_create_refusals_reach_the_docker_user(docker, node):
    unknown = docker.docker(
        "volume",
        "create",
        "--driver",
        node.plugin_name,
        "--opt",
        "size=1G",
        new_name(),
        check=False,
    )
    assert unknown.returncode != 0
    assert "supported options: gid, mode, serviceId, uid" in unknown.stderr

    short = docker.docker(
        "volume", "create", "--driver", node.plugin_name, "x", check=False
    )
    assert short.returncode != 0
    assert "too short" in short.stderr
    assert "x" not in driver_volumes(docker, node)


def test_containers_share_the_volume_and_rm_waits_for_them(docker, node):
    name = new_name()
    docker.docker("volume", "create", "--driver", node.plugin_name, name)

    run(docker, name, "echo hello > /data/hello.txt", "--rm")
    assert (mountpoint(node, name) / "hello.txt").read_text() == "hello\n"
    assert api_volume(node, name)["mounts"] == 0

    holder = hold(docker, name)
    seen = run(docker, name, "cat /data/hello.txt", "--rm")
    assert seen.stdout == "hello\n"
    assert api_volume(node, name)["mounts"] == 1

    refused = docker.docker("volume", "rm", name, check=False)
    assert refused.returncode != 0
    assert "in use" in refused.stderr
    assert (mountpoint(node, name) / "hello.txt").exists()

    docker.docker("stop", holder)
    assert api_volume(node, name)["mounts"] == 0
    still_refused = docker.docker("volume", "rm", name, check=False)
    assert still_refused.returncode != 0  # the stopped container still uses it

    docker.docker("rm", holder)
    docker.docker("volume", "rm", name)
    assert api_volume(node, name) is None
    assert not (node.data_dir / "volumes" / name).exists()


def test_uid_option_lets_a_non_root_container_write(docker, node):
    owned, plain, copied, kept = (new_name() for _ in range(4))
    for name in (owned, copied, kept):
        docker.docker(
            "volume", "create", "--driver", node.plugin_name,
            "--opt", "uid=1000", "--opt", "gid=1000", name,
        )  # fmt: skip
    docker.docker("volume", "create", "--driver", node.plugin_name, plain)

    def touch_as_1000(name, target, mode=""):
        return docker.docker(
            "run", "--rm", "--network", "none", "--user", "1000:1000",
            "-v", f"{name}:{target}{mode}", docker.image, "touch", f"{target}/mine",
            check=False,
        )  # fmt: skip

    # /vol is not in the image, so the folder keeps the owner it was given.
    assert touch_as_1000(owned, "/vol").returncode == 0
    assert (mountpoint(node, owned) / "mine").stat().st_uid == 1000
    denied = touch_as_1000(plain, "/vol")
    assert denied.returncode != 0
    assert "Permission denied" in denied.stderr

    # A daemon quirk: on the first mount of an empty volume over a folder
    # that exists in the image (/data here), dockerd copies that folder's
    # contents, owner and mode onto the volume, which undoes uid/gid/mode.
    # `:nocopy` keeps them.
    assert touch_as_1000(copied, "/data").returncode != 0
    assert mountpoint(node, copied).stat().st_uid == 0
    assert touch_as_1000(kept, "/data", ":nocopy").returncode == 0
    assert mountpoint(node, kept).stat().st_uid == 1000

    docker.docker("volume", "rm", owned, plain, copied, kept)


def test_read_only_mount_is_enforced_by_the_daemon(docker, node):
    name = new_name()
    docker.docker("volume", "create", "--driver", node.plugin_name, name)
    denied = docker.docker(
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        f"{name}:/data:ro",
        docker.image,
        "sh",
        "-c",
        "touch /data/x",
        check=False,
    )
    assert denied.returncode != 0
    assert not (mountpoint(node, name) / "x").exists()
    assert api_volume(node, name)["mounts"] == 0
    docker.docker("volume", "rm", name)


def test_stack_restart_while_a_container_holds_the_volume(docker, node):
    name = new_name()
    docker.docker("volume", "create", "--driver", node.plugin_name, name)
    holder = hold(docker, name)
    docker.docker("exec", holder, "sh", "-c", "echo before > /data/before.txt")
    assert api_volume(node, name)["mounts"] == 1

    node.stop()
    # The container keeps its bind mount while the plugin is gone.
    docker.docker("exec", holder, "sh", "-c", "echo during > /data/during.txt")
    # A removal that a crash cut short leaves a renamed folder behind.
    leftover = node.data_dir / "volumes" / ".removed-0123456789abcdef"
    (leftover / "data").mkdir(parents=True)
    node.start()
    assert not leftover.exists()

    assert docker.docker("exec", holder, "cat", "/data/before.txt").stdout == (
        "before\n"
    )
    assert (mountpoint(node, name) / "during.txt").read_text() == "during\n"
    info = inspect(docker, name)
    assert info["Mountpoint"] == str(mountpoint(node, name))
    assert info["Status"] == {"mounts": 1}
    assert api_volume(node, name)["mounts"] == 1

    docker.docker("stop", holder)
    assert api_volume(node, name)["mounts"] == 0
    docker.docker("rm", holder)
    docker.docker("volume", "rm", name)
    assert not (node.data_dir / "volumes" / name).exists()


def test_plugin_answers_from_stored_state_right_after_a_crash(docker, node):
    name = new_name()
    docker.docker("volume", "create", "--driver", node.plugin_name, name)
    holder = hold(docker, name)

    old_socket = socket_identity(node.plugin_socket)
    os.kill(node.child_pid("volumeplugin"), signal.SIGKILL)
    # supervisord starts it again, and the new server binds a new socket file
    # (the killed one's orphaned worker may hold the old one for a moment).
    # The first calls on the new socket must already see the volume and its
    # mount.
    wait_for(
        lambda: (
            socket_identity(node.plugin_socket) not in (None, old_socket)
            and accepts(node.plugin_socket)
        ),
        what="the restarted plugin socket",
    )
    plugin = PluginClient(node.plugin_socket)
    got = plugin.get(name)
    assert got["Err"] == ""
    assert got["Volume"]["Status"] == {"mounts": 1}
    assert name in {v["Name"] for v in plugin.list()["Volumes"]}

    assert inspect(docker, name)["Status"] == {"mounts": 1}
    docker.docker("rm", "-f", holder)
    assert api_volume(node, name)["mounts"] == 0
    docker.docker("volume", "rm", name)


def socket_identity(path) -> tuple | None:
    # The inode number alone may be reused by the new socket file.
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_ctime_ns


def accepts(path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def test_dockerd_restart_finds_every_volume(docker, node):
    names = [new_name() for _ in range(3)]
    for name in names:
        docker.docker("volume", "create", "--driver", node.plugin_name, name)
    run(docker, names[0], "echo kept > /data/kept.txt", "--rm")

    docker.restart()

    assert driver_volumes(docker, node) >= set(names)
    for name in names:
        info = inspect(docker, name)
        assert info["Driver"] == node.plugin_name
        assert info["Mountpoint"] == str(mountpoint(node, name))
    seen = run(docker, names[0], "cat /data/kept.txt", "--rm")
    assert seen.stdout == "kept\n"

    docker.docker("volume", "rm", *names)
    assert not driver_volumes(docker, node) & set(names)


def admin_session(node) -> requests.Session:
    session = requests.Session()
    session.get(f"{node.url}/admin/login/", timeout=30).raise_for_status()
    answer = session.post(
        f"{node.url}/admin/login/?next=/admin/",
        data={
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        timeout=30,
    )
    assert answer.url.endswith("/admin/"), answer.url
    return session


def test_admin_shows_size_and_mounts_read_only(docker, node):
    name = new_name()
    docker.docker("volume", "create", "--driver", node.plugin_name, name)
    holder = hold(docker, name)
    docker.docker("exec", holder, "sh", "-c", "head -c 4096 /dev/zero > /data/f")
    session = admin_session(node)

    listing = session.get(f"{node.url}/admin/volumes/volume/?q={name}", timeout=30)
    assert listing.status_code == 200
    row = listing.text[listing.text.index(f">{name}<") :]
    row = row[: row.index("</tr>")]
    assert "4.0\xa0KB" in row
    assert '<td class="field-active_mounts">1</td>' in row

    link = re.search(r'href="(/admin/volumes/volume/\d+/change/)', listing.text)
    page = session.get(node.url + link.group(1), timeout=30)
    assert page.status_code == 200
    assert str(mountpoint(node, name)) in page.text
    assert 'name="_save"' not in page.text
    assert session.get(f"{node.url}/admin/volumes/volume/add/").status_code == 403

    docker.docker("rm", "-f", holder)
    docker.docker("volume", "rm", name)
