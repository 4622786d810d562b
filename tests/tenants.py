"""Clients for a test stack's engines: as the node's admin and as a tenant."""

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pymongo
from botocore.config import Config

from corestore_project import derive


def master_secret(node) -> str:
    return (node.data_dir / "master.secret").read_text().strip()


def admin_mongo(node) -> pymongo.MongoClient:
    user, password = derive.db_admin_credentials(master_secret(node))
    return pymongo.MongoClient(
        host="127.0.0.1",
        port=node.ports["db"],
        username=user,
        password=password,
        authSource="admin",
        directConnection=True,
        retryWrites=False,
        serverSelectionTimeoutMS=5000,
    )


def s3_client(endpoint, access_key, secret_key, region="us-east-1", read_timeout=30):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=5,
            read_timeout=read_timeout,
        ),
    )


def admin_s3(node):
    access_key, secret_key = derive.s3_admin_credentials(master_secret(node))
    return s3_client(f"http://127.0.0.1:{node.ports['s3']}", access_key, secret_key)


def admin_buckets(node) -> set[str]:
    """The buckets the object engine lists to its admin.

    rclone caches directory listings for a second (--dir-cache-time 1s), so
    wait that long for a listing that shows the last change.
    """
    time.sleep(1.2)
    return {b["Name"] for b in admin_s3(node).list_buckets()["Buckets"]}


def tenant_mongo(env: dict) -> pymongo.MongoClient:
    return pymongo.MongoClient(env["MONGODB_URI"], serverSelectionTimeoutMS=5000)


def tenant_s3(env: dict, read_timeout=30):
    return s3_client(
        env["AWS_ENDPOINT_URL"],
        env["AWS_ACCESS_KEY_ID"],
        env["AWS_SECRET_ACCESS_KEY"],
        env["AWS_REGION"],
        read_timeout,
    )


def new_service_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def engine_state(node) -> dict:
    """Everything provisioning can change, to compare before and after a call."""
    mongo = admin_mongo(node)
    try:
        databases = sorted(mongo.list_database_names())
        users = sorted(
            (u["db"], u["user"])
            for u in mongo.admin.command("usersInfo", {"forAllDBs": True})["users"]
        )
    finally:
        mongo.close()
    buckets_dir = node.data_dir / "s3" / "buckets"
    buckets = sorted(p.name for p in buckets_dir.iterdir() if p.is_dir())
    key_map = node.data_dir / "s3" / "keys.json"
    return {
        "services": node.get("/resources").json(),
        "databases": databases,
        "users": users,
        "buckets": buckets,
        "keys": json.loads(key_map.read_text()) if key_map.exists() else None,
    }


def supervisorctl(node, *args: str) -> str:
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("supervisorctl")),
            "-c",
            str(node.data_dir / "run" / "supervisord.conf"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout + result.stderr


def wait_until(check, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not there yet
            pass
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached within {timeout}s")
