"""Database engines: mongod in production, SecantusDB embedded.

Both speak the MongoDB wire protocol, so one pymongo code path serves them; the
adapters differ only in how the server is started and in the URI options that
the embedded engine needs. SecantusDB listens on a private loopback port (kept
in <data>/run/database-engine.port) behind the database gateway
(db_gateway.py), which holds the node's database port.
"""

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pymongo
from django.conf import settings
from pymongo.errors import OperationFailure, PyMongoError

from corestore_project import derive

from .base import (
    DatabaseEngine,
    EngineUnavailable,
    ProcessSpec,
    connect_host,
    ensure_dir,
    free_loopback_port,
    venv_bin,
    wait_for,
)

logger = logging.getLogger(__name__)

GATEWAY_SCRIPT = Path(__file__).with_name("db_gateway.py")

USER_NOT_FOUND = 11
USER_EXISTS = 51003


class MongoWireEngine(DatabaseEngine):
    # Options every client URI of this engine carries.
    uri_options = {"directConnection": "true"}

    @property
    def data_dir(self) -> Path:
        return settings.DATA_DIR / "db"

    @property
    def marker(self) -> Path:
        # Written once the admin user exists; its absence means "bootstrap".
        return self.data_dir / ".corestore-admin-ready"

    def server_command(self, host: str, port: int, auth: bool) -> list[str]:
        raise NotImplementedError

    def processes(self) -> list[ProcessSpec]:
        command = self.server_command(settings.BIND_ADDRESS, settings.DB_PORT, True)
        return [
            ProcessSpec(
                name="database", command=command, stop_wait_seconds=60, priority=20
            )
        ]

    def client(self, username=None, password=None, auth_source="admin", **kwargs):
        if username is None:
            username, password = derive.db_admin_credentials(settings.MASTER_SECRET)
        options = {
            key: value == "true" if value in ("true", "false") else value
            for key, value in self.uri_options.items()
        }
        return pymongo.MongoClient(
            host=connect_host(),
            port=settings.DB_PORT,
            username=username,
            password=password,
            authSource=auth_source,
            serverSelectionTimeoutMS=kwargs.pop("timeout_ms", 3000),
            **options,
            **kwargs,
        )

    def prepare(self) -> None:
        """Create the admin user before the engine ever runs with --auth.

        Steps: start the server without auth on a private loopback port, create
        (or reset) the admin user, stop it, and leave a marker. SecantusDB has
        no localhost exception, so this is the only way in; mongod takes the same
        path for one code path.
        """
        ensure_dir(self.data_dir)
        if self.marker.exists():
            return

        port = free_loopback_port()
        command = self.server_command("127.0.0.1", port, False)
        log_path = settings.LOG_DIR / "database-bootstrap.log"
        with open(log_path, "ab") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._create_admin(port)
        finally:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        self.marker.write_text("admin user created\n")
        logger.info("database engine %s: admin user created", self.kind)

    def _create_admin(self, port: int) -> None:
        client = pymongo.MongoClient(
            host="127.0.0.1",
            port=port,
            serverSelectionTimeoutMS=1000,
            **{key: value == "true" for key, value in self.uri_options.items()},
        )
        try:
            wait_for(lambda: client.admin.command("ping"), 60, "database bootstrap")
            user, password = derive.db_admin_credentials(settings.MASTER_SECRET)
            roles = [{"role": "root", "db": "admin"}]
            try:
                client.admin.command("createUser", user, pwd=password, roles=roles)
            except OperationFailure as exc:
                if exc.code != USER_EXISTS:
                    raise
                client.admin.command("updateUser", user, pwd=password, roles=roles)
        finally:
            client.close()

    def ready(self) -> bool:
        client = self.client(timeout_ms=1000)
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()

    def ensure_tenant(self, database: str, user: str, password: str) -> None:
        # readWrite only: on SecantusDB a dbOwner can grant itself root.
        roles = [{"role": "readWrite", "db": database}]
        client = self.client()
        try:
            target = client[database]
            try:
                target.command("createUser", user, pwd=password, roles=roles)
            except OperationFailure as exc:
                if exc.code != USER_EXISTS:
                    raise
                target.command("updateUser", user, pwd=password, roles=roles)
        except PyMongoError as exc:
            raise EngineUnavailable(f"database engine: {type(exc).__name__}") from exc
        finally:
            client.close()

    def drop_tenant(self, database: str, user: str) -> None:
        client = self.client()
        try:
            try:
                client[database].command("dropUser", user)
            except OperationFailure as exc:
                if exc.code != USER_NOT_FOUND:
                    raise
            client.drop_database(database)
        except PyMongoError as exc:
            raise EngineUnavailable(f"database engine: {type(exc).__name__}") from exc
        finally:
            client.close()

    def database_exists(self, database: str) -> bool:
        client = self.client()
        try:
            return database in client.list_database_names()
        finally:
            client.close()

    def user_exists(self, database: str, user: str) -> bool:
        client = self.client()
        try:
            found = client[database].command("usersInfo", user)
            return bool(found.get("users"))
        finally:
            client.close()


class SecantusEngine(MongoWireEngine):
    kind = "secantus"
    embedded = True
    # retryWrites=false: pymongo's retryable writes slow this engine down 20x
    # after ~10k writes. directConnection=true: it advertises a replica set
    # member at its private loopback port, which clients must not follow.
    uri_options = {"directConnection": "true", "retryWrites": "false"}
    limits = [
        "acknowledged writes are durable only because it runs with "
        "--sync-on-commit, at a cost in write throughput",
        "clients must use retryWrites=false (retryable writes slow it 20x) and "
        "directConnection=true (it advertises its private loopback address); "
        "returned URIs carry both",
        "text and hashed indexes are not supported; capped collections keep "
        "their options but are not capped",
        "tenants get readWrite only (dbOwner could escalate to root)",
        "bulkWrite (MongoClient.bulk_write) and renameCollection across "
        "databases are refused (the engine cannot authorize them)",
        "a connection authenticated before deprovision keeps its rights until "
        "it closes (mongod revokes them): a workload still running can write "
        "its dropped database back; stop it before deprovisioning",
    ]

    @property
    def port_file(self) -> Path:
        return settings.RUN_DIR / "database-engine.port"

    def prepare(self) -> None:
        super().prepare()
        # A fresh private port at every start, written where the gateway and
        # the supervisor config read it; the port of a previous run may be
        # taken by now.
        ensure_dir(settings.RUN_DIR)
        self.port_file.write_text(f"{free_loopback_port()}\n")

    def engine_port(self) -> int:
        if not self.port_file.exists():
            self.prepare()
        return int(self.port_file.read_text().strip())

    def processes(self) -> list[ProcessSpec]:
        """SecantusDB on a private loopback port, the gateway on DB_PORT.

        The engine skips authorization for a few commands (see limits); the
        gateway (db_gateway.py) answers those itself and relays the rest.
        """
        engine = self.server_command("127.0.0.1", self.engine_port(), True)
        gateway = [
            sys.executable,
            str(GATEWAY_SCRIPT),
            "--listen",
            f"{settings.BIND_ADDRESS}:{settings.DB_PORT}",
            "--upstream-port-file",
            str(self.port_file),
            "--log-format",
            settings.LOG_FORMAT,
        ]
        return [
            ProcessSpec(
                name="database", command=engine, stop_wait_seconds=60, priority=20
            ),
            # Starts after the engine and stops before it.
            ProcessSpec(name="dbgateway", command=gateway, priority=25),
        ]

    def server_command(self, host: str, port: int, auth: bool) -> list[str]:
        command = [
            venv_bin("secantusd-py"),
            "--host",
            host,
            "--port",
            str(port),
            "--storage-path",
            str(self.data_dir),
            "--sync-on-commit",
            "--log-level",
            "WARNING",
        ]
        if auth:
            command.append("--auth")
        return command


class MongodEngine(MongoWireEngine):
    kind = "mongod"
    embedded = False
    limits = []

    def server_command(self, host: str, port: int, auth: bool) -> list[str]:
        command = [
            shutil.which("mongod") or "mongod",
            "--dbpath",
            str(self.data_dir),
            "--bind_ip",
            host,
            "--port",
            str(port),
        ]
        if auth:
            command.append("--auth")
        return command
