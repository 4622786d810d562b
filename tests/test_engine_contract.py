"""One contract for every engine adapter present on this machine.

Each adapter is started on its own from the process specs it gives the
supervisor, in a data dir of its own, and must: report readiness only while it
runs; ensure a tenant that reaches its own database or bucket and nothing
else, repeatably; drop a tenant so that its data and credentials are gone,
repeatably; and raise EngineUnavailable, not hang, when the engine is down.
mongod and MinIO run only where their binaries are on PATH (the Docker image).
"""

import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import django
import pymongo
import pytest
from botocore.exceptions import BotoCoreError, ClientError
from pymongo.errors import PyMongoError

from corestore_project import derive
from tests.stackrunner import free_port
from tests.tenants import s3_client, wait_until

django.setup()

from django.test import override_settings  # noqa: E402

from corestore_project.engines import EngineUnavailable  # noqa: E402
from corestore_project.engines.minio import MinioEngine  # noqa: E402
from corestore_project.engines.mongo import MongodEngine, SecantusEngine  # noqa: E402
from corestore_project.engines.rclone import RcloneEngine  # noqa: E402


def _needs(binary: str):
    return pytest.mark.skipif(
        shutil.which(binary) is None, reason=f"{binary} is not on PATH"
    )


DATABASE_ENGINES = [
    pytest.param(SecantusEngine, id="secantus"),
    pytest.param(MongodEngine, id="mongod", marks=_needs("mongod")),
]
OBJECT_ENGINES = [
    pytest.param(RcloneEngine, id="rclone"),
    pytest.param(MinioEngine, id="minio", marks=_needs("minio")),
]


class EngineHome:
    """An engine adapter with the settings of its own data dir and ports."""

    def __init__(self, engine_class, data_dir: Path):
        self.engine = engine_class()
        self.data_dir = data_dir
        for name in ("run", "log"):
            (data_dir / name).mkdir(parents=True, exist_ok=True)
        self.secret = derive.ensure_master_secret(data_dir, None)
        self.values = {
            "DATA_DIR": data_dir,
            "RUN_DIR": data_dir / "run",
            "LOG_DIR": data_dir / "log",
            "BIND_ADDRESS": "127.0.0.1",
            "DB_PORT": free_port(),
            "S3_PORT": free_port(),
            "MASTER_SECRET": self.secret,
        }
        self.processes = []

    @contextmanager
    def settings(self):
        with override_settings(**self.values):
            yield self.engine

    def environment(self, extra: dict) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORESTORE_")}
        env.update(
            {
                "CORESTORE_DATA_DIR": str(self.data_dir),
                "CORESTORE_BIND_ADDRESS": "127.0.0.1",
                "CORESTORE_DB_PORT": str(self.values["DB_PORT"]),
                "CORESTORE_S3_PORT": str(self.values["S3_PORT"]),
            }
        )
        env.update(extra)
        return env

    def start(self):
        with self.settings() as engine:
            engine.prepare()
            specs = (
                engine.processes()
                if hasattr(engine, "processes")
                else [engine.process()]
            )
            for spec in sorted(specs, key=lambda s: s.priority):
                log = open(self.data_dir / "log" / f"{spec.name}.log", "ab")
                self.processes.append(
                    subprocess.Popen(
                        spec.command,
                        env=self.environment(spec.environment),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
                log.close()
            wait_until(engine.ready, timeout=90, what=f"{engine.kind} ready")

    def stop(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes = []


@pytest.fixture(scope="module", params=DATABASE_ENGINES)
def database(request, tmp_path_factory):
    home = EngineHome(request.param, tmp_path_factory.mktemp("db-engine"))
    try:
        home.start()
        yield home
    finally:
        home.stop()


@pytest.fixture(scope="module", params=OBJECT_ENGINES)
def objectstorage(request, tmp_path_factory):
    home = EngineHome(request.param, tmp_path_factory.mktemp("s3-engine"))
    try:
        home.start()
        yield home
    finally:
        home.stop()


def refused(call) -> bool:
    try:
        call()
    except (PyMongoError, ClientError, BotoCoreError):
        return True
    except AttributeError:
        # botocore fails this way parsing a 500 whose body carries a checksum,
        # which rclone sends for a GET in a deprovisioned bucket.
        return True
    return False


# Database engines.


def db_tenant(home, service_id):
    user, password = derive.db_tenant_credentials(home.secret, service_id)
    database = f"{service_id}-{derive.short_hash(service_id)}"
    return database, user, password


def tenant_client(home, database, user, password):
    with home.settings() as engine:
        options = {
            key: value == "true" if value in ("true", "false") else value
            for key, value in engine.uri_options.items()
        }
    return pymongo.MongoClient(
        host="127.0.0.1",
        port=home.values["DB_PORT"],
        username=user,
        password=password,
        authSource=database,
        serverSelectionTimeoutMS=5000,
        **options,
    )


def test_database_ready_only_while_running(database, tmp_path):
    with database.settings() as engine:
        assert engine.ready()
    stopped = EngineHome(type(database.engine), tmp_path)
    with stopped.settings() as engine:
        assert not engine.ready()
        with pytest.raises(EngineUnavailable):
            engine.ensure_tenant("nothing-here", "svc-nobody", "x" * 20)


def test_database_tenant_reaches_its_database_only(database):
    own, user, password = db_tenant(database, "dbone")
    other, other_user, other_password = db_tenant(database, "dbtwo")
    with database.settings() as engine:
        engine.ensure_tenant(own, user, password)
        engine.ensure_tenant(other, other_user, other_password)

    client = tenant_client(database, own, user, password)
    try:
        client[own].items.insert_one({"_id": 1})
        assert client[own].items.find_one() == {"_id": 1}
        assert refused(lambda: client[other].items.insert_one({"_id": 2}))
        assert refused(lambda: client[other].items.find_one())
        assert refused(lambda: client.admin.command("listDatabases"))
    finally:
        client.close()

    with database.settings() as engine:
        engine.ensure_tenant(own, user, password)
        assert engine.user_exists(own, user)
    client = tenant_client(database, own, user, password)
    try:
        assert client[own].items.find_one() == {"_id": 1}
    finally:
        client.close()


def test_database_drop_tenant_removes_user_and_data(database):
    own, user, password = db_tenant(database, "dbgone")
    with database.settings() as engine:
        engine.ensure_tenant(own, user, password)
    client = tenant_client(database, own, user, password)
    client[own].items.insert_one({"_id": 1})
    client.close()

    with database.settings() as engine:
        engine.drop_tenant(own, user)
        assert not engine.database_exists(own)
        assert not engine.user_exists(own, user)
        engine.drop_tenant(own, user)

    client = tenant_client(database, own, user, password)
    try:
        assert refused(lambda: client[own].items.find_one())
    finally:
        client.close()


# Object engines.


def s3_tenant(home, service_id, read_timeout=30):
    access_key, secret_key = derive.s3_tenant_credentials(home.secret, service_id)
    bucket = f"{service_id}-{derive.short_hash(service_id)}"
    endpoint = f"http://127.0.0.1:{home.values['S3_PORT']}"
    client = s3_client(endpoint, access_key, secret_key, read_timeout=read_timeout)
    return bucket, access_key, client


def test_object_ready_only_while_running(objectstorage, tmp_path):
    with objectstorage.settings() as engine:
        assert engine.ready()
    stopped = EngineHome(type(objectstorage.engine), tmp_path)
    with stopped.settings() as engine:
        assert not engine.ready()
        with pytest.raises(EngineUnavailable):
            engine.ensure_tenant("nothing-here", "CSNOBODY", "nobody")


def test_object_tenant_reaches_its_bucket_only(objectstorage):
    bucket, key, s3 = s3_tenant(objectstorage, "sone")
    other, other_key, other_s3 = s3_tenant(objectstorage, "stwo")
    with objectstorage.settings() as engine:
        engine.ensure_tenant(bucket, key, "sone")
        engine.ensure_tenant(other, other_key, "stwo")

    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"one")
    assert s3.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"one"
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["a/b.txt"]
    other_s3.put_object(Bucket=other, Key="x", Body=b"two")
    assert refused(lambda: s3.get_object(Bucket=other, Key="x"))
    assert refused(lambda: s3.list_objects_v2(Bucket=other))
    assert refused(lambda: s3.put_object(Bucket=other, Key="y", Body=b"y"))
    assert refused(lambda: s3.create_bucket(Bucket="sone-grab"))

    with objectstorage.settings() as engine:
        engine.ensure_tenant(bucket, key, "sone")
        assert engine.bucket_exists(bucket)
        assert not engine.bucket_exists("sone-grab")
    assert s3.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"one"


def test_object_drop_tenant_removes_bucket_objects_and_key(objectstorage):
    bucket, key, s3 = s3_tenant(objectstorage, "sgone")
    with objectstorage.settings() as engine:
        engine.ensure_tenant(bucket, key, "sgone")
    for name in ("a", "b/c", "d/e/f"):
        s3.put_object(Bucket=bucket, Key=name, Body=b"x")

    with objectstorage.settings() as engine:
        engine.drop_tenant(bucket, key, "sgone")
        assert not engine.bucket_exists(bucket)
        engine.drop_tenant(bucket, key, "sgone")

    # The embedded engine may still accept the key for a while, but nothing
    # can be read and the bucket cannot come back through it. A refused write
    # may also go unanswered, hence the short timeout.
    _, _, s3 = s3_tenant(objectstorage, "sgone", read_timeout=5)
    assert refused(lambda: s3.get_object(Bucket=bucket, Key="a"))
    assert refused(lambda: s3.put_object(Bucket=bucket, Key="z", Body=b"z"))
    with objectstorage.settings() as engine:
        assert not engine.bucket_exists(bucket)

        engine.ensure_tenant(bucket, key, "sgone")
    time.sleep(1.2)  # rclone's directory cache
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    s3.put_object(Bucket=bucket, Key="new", Body=b"n")
    assert s3.get_object(Bucket=bucket, Key="new")["Body"].read() == b"n"
