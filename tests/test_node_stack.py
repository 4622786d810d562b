"""The node stack as a whole: start, health, engines, crash restart, clean stop."""

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from corestore_project import derive
from tests.stackrunner import ROOT, Stack
from tests.tenants import admin_mongo, admin_s3, master_secret


def wait_for_health(node: Stack, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = requests.get(f"{node.url}/health", timeout=10)
        if response.status_code == 200:
            return response.json()
        time.sleep(0.5)
    raise AssertionError(f"not healthy again: {response.text}")


def test_health_needs_no_token_and_names_every_component(stack):
    response = requests.get(f"{stack.url}/health", timeout=10)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["components"]) >= {
        "redis",
        "database",
        "objectstorage",
        "worker",
        "volumeplugin",
    }
    assert all(c["status"] == "up" for c in body["components"].values())
    assert body["engines"]["database"]["engine"] == "secantus"
    assert body["engines"]["database"]["limits"]
    assert body["engines"]["objectstorage"]["engine"] == "rclone"
    assert body["engines"]["objectstorage"]["limits"]


def test_redis_listens_on_a_unix_socket_only(stack):
    config = (stack.data_dir / "run" / "supervisord.conf").read_text()
    assert "--port 0" in config
    assert (stack.data_dir / "run" / "redis.sock").is_socket()


def test_no_secret_in_generated_config(stack):
    config = (stack.data_dir / "run" / "supervisord.conf").read_text()
    secret = master_secret(stack)
    assert secret not in config
    assert derive.db_admin_credentials(secret)[1] not in config
    assert derive.s3_admin_credentials(secret)[1] not in config
    assert oct((stack.data_dir / "master.secret").stat().st_mode & 0o777) == "0o600"


def test_bad_setting_stops_startup_with_one_line(tmp_path):
    env = {**os.environ, "CORESTORE_DATA_DIR": str(tmp_path)}
    env["CORESTORE_CONTROL_PORT"] = "not-a-port"

    result = subprocess.run(
        [sys.executable, "manage.py", "runstack", "--prepare-only"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "CORESTORE_CONTROL_PORT" in lines[0]
    assert not (tmp_path / "master.secret").exists()


def test_bad_engine_choice_is_refused(tmp_path):
    env = {**os.environ, "CORESTORE_DATA_DIR": str(tmp_path)}
    env["CORESTORE_DB_ENGINE"] = "postgres"

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "CORESTORE_DB_ENGINE" in result.stderr
    assert "postgres" in result.stderr


def test_full_lifecycle_restart_on_crash_and_clean_stop(private_stack):
    node = private_stack.start()

    # The engines answer with the derived admin credentials.
    mongo = admin_mongo(node)
    mongo["lifecycle"]["docs"].insert_one({"_id": 1, "kept": True})
    mongo.close()
    s3 = admin_s3(node)
    s3.create_bucket(Bucket="lifecycle-check")
    s3.put_object(Bucket="lifecycle-check", Key="a/b.txt", Body=b"kept")
    assert s3.get_object(Bucket="lifecycle-check", Key="a/b.txt")["Body"].read() == (
        b"kept"
    )

    # A crashed child is restarted by the supervisor.
    old_pid = node.child_pid("database")
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    new_pid = 0
    while time.monotonic() < deadline:
        try:
            new_pid = node.child_pid("database")
        except subprocess.CalledProcessError:
            new_pid = 0
        if new_pid and new_pid != old_pid:
            break
        time.sleep(0.5)
    assert new_pid and new_pid != old_pid
    wait_for_health(node)

    # SIGTERM stops everything and leaves the data dir for the next start.
    secret_before = master_secret(node)
    assert node.stop(timeout=120) == 0
    assert node.stack_pids() == []
    assert not node.plugin_socket.exists() or not _accepts(node.plugin_socket)

    node.start()
    assert master_secret(node) == secret_before
    mongo = admin_mongo(node)
    assert mongo["lifecycle"]["docs"].find_one({"_id": 1}) == {"_id": 1, "kept": True}
    mongo.close()
    body = admin_s3(node).get_object(Bucket="lifecycle-check", Key="a/b.txt")["Body"]
    assert body.read() == b"kept"


def _accepts(path) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
            return True
        except OSError:
            return False


@pytest.mark.parametrize("signal_to_send", [signal.SIGINT])
def test_ctrl_c_stops_the_stack(private_stack, signal_to_send):
    node = private_stack.start()
    node.process.send_signal(signal_to_send)
    node.process.wait(timeout=120)
    node.kill_leftovers()
    assert node.stack_pids() == []


def test_second_start_on_a_running_data_dir_is_refused(stack):
    result = subprocess.run(
        [sys.executable, "manage.py", "runstack"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "another corestore stack is running" in result.stderr
    assert stack.plugin_socket.exists()
    assert (stack.data_dir / "run" / "redis.sock").exists()
    assert requests.get(f"{stack.url}/health", timeout=10).status_code == 200


def test_forced_engine_without_its_binary_is_refused(tmp_path):
    env = {**os.environ, "CORESTORE_DATA_DIR": str(tmp_path)}
    env["CORESTORE_DB_ENGINE"] = "mongod"
    env["PATH"] = "/usr/bin:/bin"

    result = subprocess.run(
        [sys.executable, "manage.py", "runstack", "--prepare-only"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "CORESTORE_DB_ENGINE=mongod, but mongod is not on PATH" in result.stderr
