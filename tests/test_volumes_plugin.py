"""The volume plugin's socket protocol and the control API's /volumes.

These tests speak to the plugin socket directly, as the Docker daemon would;
tests/test_volumes_docker.py drives the real daemon.
"""

import secrets
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.plugin_client import PluginClient


@pytest.fixture
def plugin(stack):
    return PluginClient(stack.plugin_socket)


def new_name(prefix="vol") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def api_volume(stack, name) -> dict:
    response = stack.get(f"/volumes/{name}")
    assert response.status_code == 200, response.text
    return response.json()


def test_activate_and_capabilities(plugin):
    status, body = plugin.raw("POST", "/Plugin.Activate", b"")
    assert status == 200
    assert body == {"Implements": ["VolumeDriver"]}

    assert plugin.call("Capabilities") == {
        "Capabilities": {"Scope": "local"},
        "Err": "",
    }


def test_create_get_list_path_remove(stack, plugin):
    name = new_name()
    missing = plugin.get(name)
    assert missing["Err"] == f"no such volume: {name}"

    assert plugin.create(name) == {"Err": ""}

    mountpoint = stack.data_dir / "volumes" / name / "data"
    assert mountpoint.is_dir()
    got = plugin.get(name)
    assert got["Err"] == ""
    assert got["Volume"]["Name"] == name
    assert got["Volume"]["Mountpoint"] == str(mountpoint)
    assert got["Volume"]["CreatedAt"].endswith("+00:00")
    assert got["Volume"]["Status"] == {"mounts": 0}
    assert plugin.path(name) == {"Mountpoint": str(mountpoint), "Err": ""}
    listed = plugin.list()
    assert listed["Err"] == ""
    assert {"Name": name, "Mountpoint": str(mountpoint)}.items() <= next(
        v for v in listed["Volumes"] if v["Name"] == name
    ).items()

    assert plugin.remove(name) == {"Err": ""}
    assert not (stack.data_dir / "volumes" / name).exists()
    assert plugin.get(name)["Err"] == f"no such volume: {name}"
    assert plugin.path(name)["Err"] == f"no such volume: {name}"
    assert name not in {v["Name"] for v in plugin.list()["Volumes"]}
    # A repeated Remove finds the wanted state already reached.
    assert plugin.remove(name) == {"Err": ""}


def test_create_is_idempotent_but_refuses_other_options(plugin):
    name = new_name()
    assert plugin.create(name, {"mode": "0700"}) == {"Err": ""}
    assert plugin.create(name, {"mode": "0700"}) == {"Err": ""}

    err = plugin.create(name, {"mode": "0750"})["Err"]
    assert "already exists with other options (mode=0700)" in err
    plugin.remove(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a",
        "..",
        ".hidden",
        "-dash",
        "_under",
        "with/slash",
        "../escape",
        "sp ace",
        "uni\u00e7ode",
        "x" * 256,
        None,
        42,
    ],
)
def test_bad_names_are_refused_by_every_call(stack, plugin, name):
    for method, body in [
        ("Create", {"Name": name, "Opts": None}),
        ("Get", {"Name": name}),
        ("Path", {"Name": name}),
        ("Mount", {"Name": name, "ID": "x"}),
        ("Unmount", {"Name": name, "ID": "x"}),
        ("Remove", {"Name": name}),
    ]:
        assert plugin.call(method, body)["Err"], (method, name)
    assert sorted(p.name for p in (stack.data_dir / "volumes").iterdir()) == sorted(
        v["Name"] for v in plugin.list()["Volumes"]
    )


def test_longest_allowed_name(plugin):
    name = "L" + secrets.token_hex(4) + "x" * 246
    assert len(name) == 255
    assert plugin.create(name) == {"Err": ""}
    assert plugin.get(name)["Volume"]["Name"] == name
    assert plugin.remove(name) == {"Err": ""}


def test_unknown_option_lists_the_supported_ones(stack, plugin):
    name = new_name()
    err = plugin.create(name, {"size": "10G", "uid": "1"})["Err"]

    assert err == "unknown option 'size'; supported options: gid, mode, serviceId, uid"
    assert plugin.get(name)["Err"]
    assert not (stack.data_dir / "volumes" / name).exists()


@pytest.mark.parametrize(
    "opts",
    [
        {"uid": "root"},
        {"uid": "-1"},
        {"gid": "4294967295"},
        {"mode": "0999"},
        {"mode": "rwx"},
        {"mode": "017777"},
        {"serviceId": ""},
    ],
)
def test_bad_option_values_are_refused(plugin, opts):
    name = new_name()
    assert plugin.create(name, opts)["Err"]
    assert plugin.get(name)["Err"]


@pytest.mark.parametrize("mode", ["07777", "4755", "02770", "0o6700"])
def test_setuid_and_setgid_modes_are_refused(stack, plugin, mode):
    name = new_name()

    err = plugin.create(name, {"mode": mode})["Err"]

    assert err == (
        "option mode must be between 0 and 01777 "
        f"(no setuid or setgid bits), not {mode!r}"
    )
    assert plugin.get(name)["Err"] == f"no such volume: {name}"
    assert not (stack.data_dir / "volumes" / name).exists()


def test_uid_gid_mode_apply_to_the_data_folder(stack, plugin):
    name = new_name()
    assert plugin.create(name, {"uid": "1234", "gid": "2345", "mode": "1770"}) == {
        "Err": ""
    }

    info = (stack.data_dir / "volumes" / name / "data").stat()
    assert (info.st_uid, info.st_gid) == (1234, 2345)
    assert stat.S_IMODE(info.st_mode) == 0o1770
    assert api_volume(stack, name)["options"] == {
        "uid": "1234",
        "gid": "2345",
        "mode": "1770",
    }
    plugin.remove(name)


@pytest.mark.parametrize(
    "mode, expected", [("01777", 0o1777), ("0o750", 0o750), ("700", 0o700), ("0", 0)]
)
def test_mode_forms(stack, plugin, mode, expected):
    name = new_name()
    assert plugin.create(name, {"mode": mode}) == {"Err": ""}
    info = (stack.data_dir / "volumes" / name / "data").stat()
    assert stat.S_IMODE(info.st_mode) == expected
    plugin.remove(name)


def test_default_folder_mode_ignores_the_umask(stack, plugin):
    name = new_name()
    plugin.create(name)
    info = (stack.data_dir / "volumes" / name / "data").stat()
    assert stat.S_IMODE(info.st_mode) == 0o755
    plugin.remove(name)


def test_service_id_must_name_a_provisioned_service(stack, plugin):
    name = new_name()
    answer = plugin.create(name, {"serviceId": "svc-unknown-" + name})
    assert (
        answer["Err"] == f"serviceId 'svc-unknown-{name}' is not a provisioned service"
    )

    service_id = "svc-" + name
    provisioned = stack.post(
        "/resources/provision",
        json={
            "serviceId": service_id,
            "serviceName": "volume-owner",
            "capabilities": ["objectstorage"],
        },
    )
    assert provisioned.status_code in (200, 201), provisioned.text
    try:
        assert plugin.create(name, {"serviceId": service_id}) == {"Err": ""}
        assert api_volume(stack, name)["serviceId"] == service_id
        assert plugin.get(name)["Volume"]["Status"]["serviceId"] == service_id
        listed = stack.get("/volumes", params={"serviceId": service_id})
        assert [v["name"] for v in listed.json()["volumes"]] == [name]
        plugin.remove(name)
    finally:
        stack.post("/resources/deprovision", json={"serviceId": service_id})


def test_mount_reference_counting(stack, plugin):
    name = new_name()
    plugin.create(name)
    mountpoint = str(stack.data_dir / "volumes" / name / "data")

    assert plugin.mount(name, "id-1") == {"Mountpoint": mountpoint, "Err": ""}
    assert plugin.mount(name, "id-2") == {"Mountpoint": mountpoint, "Err": ""}
    # The same ID twice still holds the volume once.
    assert plugin.mount(name, "id-2")["Err"] == ""
    assert plugin.get(name)["Volume"]["Status"]["mounts"] == 2
    assert api_volume(stack, name)["mounts"] == 2

    assert plugin.unmount(name, "id-1") == {"Err": ""}
    assert plugin.unmount(name, "never-mounted") == {"Err": ""}
    assert plugin.unmount(name, "id-1") == {"Err": ""}
    assert api_volume(stack, name)["mounts"] == 1

    (stack.data_dir / "volumes" / name / "data" / "keep.txt").write_text("kept")
    err = plugin.remove(name)["Err"]
    assert err.startswith(f"volume {name} is in use (1 active mounts)")
    assert (stack.data_dir / "volumes" / name / "data" / "keep.txt").exists()
    assert plugin.get(name)["Err"] == ""

    assert plugin.unmount(name, "id-2") == {"Err": ""}
    assert plugin.remove(name) == {"Err": ""}
    assert not (stack.data_dir / "volumes" / name).exists()


def test_mount_and_unmount_of_unknown_volume(plugin):
    name = new_name()
    assert plugin.mount(name, "id")["Err"] == f"no such volume: {name}"
    assert plugin.unmount(name, "id")["Err"] == f"no such volume: {name}"


def test_parallel_mounts_and_unmounts_keep_exact_counts(stack, plugin):
    names = [new_name("par") for _ in range(4)]
    for name in names:
        plugin.create(name)
    calls = [(name, f"{name}-id-{i}") for name in names for i in range(25)]

    with ThreadPoolExecutor(max_workers=16) as pool:
        mounted = list(pool.map(lambda c: plugin.mount(*c), calls))
    assert all(answer["Err"] == "" for answer in mounted)
    for name in names:
        assert api_volume(stack, name)["mounts"] == 25

    # Unmount all but one ID per volume, interleaved with repeats and removes
    # that must be refused.
    releases = [c for c in calls if not c[1].endswith("-id-0")]
    work = [("unmount", c) for c in releases + releases[:30]]
    work += [("remove", (name,)) for name in names]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda w: getattr(plugin, w[0])(*w[1]), work))
    results = list(zip(work, answers, strict=True))
    assert all(a["Err"] == "" for (kind, _), a in results if kind == "unmount")
    assert all("in use" in a["Err"] for (kind, _), a in results if kind == "remove")
    for name in names:
        assert api_volume(stack, name)["mounts"] == 1
        assert plugin.unmount(name, f"{name}-id-0") == {"Err": ""}
        assert plugin.remove(name) == {"Err": ""}


def test_parallel_create_and_remove_of_one_name(stack, plugin):
    name = new_name("race")
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: plugin.create(name), range(16)))
    assert all(answer == {"Err": ""} for answer in answers)
    assert [v["Name"] for v in plugin.list()["Volumes"]].count(name) == 1

    work = ["create", "remove"] * 10
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda m: getattr(plugin, m)(name), work))
    assert all(answer == {"Err": ""} for answer in answers)

    # Whatever order they ran in, the row and the folder agree.
    exists = plugin.get(name)["Err"] == ""
    assert (stack.data_dir / "volumes" / name / "data").is_dir() == exists
    plugin.remove(name)
    assert not [
        p for p in (stack.data_dir / "volumes").iterdir() if p.name.startswith(".")
    ]


def test_requests_as_the_daemon_sends_them(plugin):
    # No body at all, a JSON null, and garbage.
    status, body = plugin.raw("POST", "/VolumeDriver.List", None)
    assert status == 200 and body["Err"] == ""
    status, body = plugin.raw("POST", "/VolumeDriver.Capabilities", b"null")
    assert status == 200 and body["Capabilities"] == {"Scope": "local"}
    status, body = plugin.raw("POST", "/VolumeDriver.Create", b"{not json")
    assert status == 200 and body["Err"] == "request body is not valid JSON"
    status, body = plugin.raw("POST", "/VolumeDriver.Create", b"[1]")
    assert status == 200 and body["Err"] == "request body must be a JSON object"
    status, body = plugin.raw("GET", "/VolumeDriver.List")
    assert status == 405 and body["Err"]
    status, body = plugin.raw("POST", "/VolumeDriver.Snapshot", b"{}")
    assert status == 404 and "no endpoint" in body["Err"]


def test_only_root_may_use_the_socket(stack):
    assert stat.S_IMODE(stack.plugin_socket.stat().st_mode) & 0o077 == 0


def test_plugin_routes_only_on_the_socket(stack, plugin):
    response = requests.post(
        f"{stack.url}/VolumeDriver.List", headers=stack.headers(), timeout=10
    )
    assert response.status_code == 404
    response = requests.post(f"{stack.url}/Plugin.Activate", timeout=10)
    assert response.status_code == 404

    # ...and the control API is not on the socket.
    status, body = plugin.raw("GET", "/volumes")
    assert status == 404
    status, body = plugin.raw("GET", "/health")
    assert status == 404


def test_volumes_api_needs_the_token(stack):
    for path in ("/volumes", "/volumes/anything"):
        response = requests.get(stack.url + path, timeout=10)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        response = requests.get(
            stack.url + path, headers={"Authorization": "Bearer wrong"}, timeout=10
        )
        assert response.status_code == 401


def test_volumes_api_lists_size_mounts_and_created_at(stack, plugin):
    name = new_name()
    plugin.create(name)
    data = stack.data_dir / "volumes" / name / "data"
    (data / "a.bin").write_bytes(b"x" * 1000)
    (data / "sub").mkdir()
    (data / "sub" / "b.bin").write_bytes(b"y" * 24)
    (data / "sub" / "b-link").hardlink_to(data / "sub" / "b.bin")
    (data / "dangling").symlink_to("/nonexistent")
    plugin.mount(name, "holder")

    listed = stack.get("/volumes")
    assert listed.status_code == 200
    entry = next(v for v in listed.json()["volumes"] if v["name"] == name)
    assert entry == api_volume(stack, name)
    assert entry["mountpoint"] == str(data)
    assert entry["mounts"] == 1
    assert entry["serviceId"] is None
    assert isinstance(entry["createdAt"], int) and entry["createdAt"] > 1.7e12
    # The symlink counts its own length; the hard link counts once.
    assert entry["size"] == 1000 + 24 + len("/nonexistent")

    missing = stack.get("/volumes/no-such-volume")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"

    plugin.unmount(name, "holder")
    plugin.remove(name)
