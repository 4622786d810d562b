"""A service's database and bucket: snapshot, damage, restore, equal again."""

import hashlib
import io
import os
import secrets

import pytest

from corestore_project import derive
from tests.tenants import master_secret, new_service_id, tenant_mongo, tenant_s3
from tests.test_dumpers import (
    damage_database,
    fill_database,
    mongo_client,
    snapshot_state,
)
from tests.test_snapshots import wait_job

MB = 1024 * 1024
BOTH = ["database", "objectstorage"]


def provision(node, service_id, capabilities=BOTH) -> dict:
    body = {
        "serviceId": service_id,
        "serviceName": "shop",
        "capabilities": capabilities,
    }
    response = node.post("/resources/provision", json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.fixture
def service(stack):
    service_id = new_service_id("snap")
    env = provision(stack, service_id)["env"]
    yield service_id, env
    stack.post("/resources/deprovision", json={"serviceId": service_id})


def fill_bucket(s3, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket,
        Key="site/index.html",
        Body=b"<h1>hello</h1>",
        ContentType="text/html; charset=utf-8",
        Metadata={"author": "ops", "release": "41"},
    )
    s3.put_object(Bucket=bucket, Key="site/assets/deep/logo.svg", Body=b"<svg/>")
    s3.put_object(
        Bucket=bucket, Key="empty-object", Body=b"", ContentType="application/x-empty"
    )
    s3.put_object(
        Bucket=bucket,
        Key="notes/über ñame.txt",
        Body=b"unicode key",
        ContentType="text/plain",
        Metadata={"lang": "de"},
    )
    big = io.BytesIO(os.urandom(50 * MB))
    s3.upload_fileobj(
        big,
        bucket,
        "uploads/big.bin",
        ExtraArgs={"ContentType": "application/octet-stream", "Metadata": {"k": "v"}},
    )


def bucket_state(s3, bucket: str) -> dict:
    state = {}
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    for page in pages:
        for item in page.get("Contents", []):
            key = item["Key"]
            got = s3.get_object(Bucket=bucket, Key=key)
            state[key] = {
                "sha256": hashlib.sha256(got["Body"].read()).hexdigest(),
                "size": got["ContentLength"],
                "type": got["ContentType"],
                "metadata": got["Metadata"],
            }
    return state


def damage_bucket(s3, bucket: str) -> None:
    s3.delete_object(Bucket=bucket, Key="site/assets/deep/logo.svg")
    s3.put_object(
        Bucket=bucket, Key="site/index.html", Body=b"broken", ContentType="text/plain"
    )
    s3.delete_object(Bucket=bucket, Key="uploads/big.bin")
    s3.put_object(Bucket=bucket, Key="junk/new.txt", Body=b"not in the snapshot")


def test_database_and_bucket_round_trip(stack, service):
    service_id, env = service
    admin = mongo_client(stack, *derive.db_admin_credentials(master_secret(stack)))
    database = admin[env["MONGODB_DATABASE"]]
    fill_database(database)
    s3, bucket = tenant_s3(env), env["S3_BUCKET"]
    fill_bucket(s3, bucket)
    db_before, bucket_before = snapshot_state(database), bucket_state(s3, bucket)

    response = stack.post(
        "/resources/snapshot", {"serviceId": service_id, "snapshotName": "pre"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["serviceId"] == service_id
    snapshots = {snap["capability"]: snap for snap in body["snapshots"]}
    assert set(snapshots) == {"database", "objectstorage"}
    assert snapshots["database"]["resourceName"] == "db"
    assert snapshots["objectstorage"]["resourceName"] == "bucket"
    assert snapshots["objectstorage"]["originalSize"] >= 50 * MB
    for snap in body["snapshots"]:
        assert snap["tags"]["serviceId"] == service_id
        assert snap["tags"]["snapshotName"] == "pre"
    listed = stack.get("/snapshots", params={"serviceId": service_id}).json()
    assert len(listed["snapshots"]) == 2

    damage_database(database)
    damage_bucket(s3, bucket)
    assert snapshot_state(database) != db_before

    response = stack.post(
        "/resources/restore", {"serviceId": service_id, "snapshots": body["snapshots"]}
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["restored"]) == 2

    assert snapshot_state(database) == db_before
    assert bucket_state(s3, bucket) == bucket_before
    # The service's own credentials still work on both.
    tenant = tenant_mongo(env)
    assert tenant[env["MONGODB_DATABASE"]].types.count_documents({}) == 10
    tenant.close()
    admin.close()


def test_restore_of_another_services_snapshot_is_404(stack, service):
    service_id, env = service
    other_id = new_service_id("other")
    other_env = provision(stack, other_id)["env"]
    try:
        tenant_s3(other_env).put_object(
            Bucket=other_env["S3_BUCKET"], Key="mine", Body=b"x"
        )
        response = stack.post("/resources/snapshot", {"serviceId": other_id})
        assert response.status_code == 200, response.text
        others = response.json()["snapshots"]

        tenant_s3(env).put_object(Bucket=env["S3_BUCKET"], Key="keep", Body=b"k")
        refused = stack.post(
            "/resources/restore", {"serviceId": service_id, "snapshots": others}
        )
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "not_found"
        unknown = stack.post(
            "/resources/restore",
            {"serviceId": service_id, "snapshots": [{"snapshotId": "f" * 64}]},
        )
        assert unknown.status_code == 404
        no_service = stack.post(
            "/resources/snapshot", {"serviceId": f"nobody-{secrets.token_hex(3)}"}
        )
        assert no_service.status_code == 404

        keys = tenant_s3(env).list_objects_v2(Bucket=env["S3_BUCKET"])["Contents"]
        assert [item["Key"] for item in keys] == ["keep"]
    finally:
        stack.post("/resources/deprovision", json={"serviceId": other_id})


def test_deprovision_waits_for_a_running_restore(stack):
    service_id = new_service_id("busy")
    env = provision(stack, service_id, ["database"])["env"]
    tenant = tenant_mongo(env)
    database = tenant[env["MONGODB_DATABASE"]]
    database.docs.insert_many({"n": n, "pad": "x" * 100} for n in range(20000))
    snapshot = stack.post("/resources/snapshot", {"serviceId": service_id})
    assert snapshot.status_code == 200, snapshot.text

    restore = stack.post(
        "/resources/restore",
        {"serviceId": service_id, "snapshots": snapshot.json()["snapshots"]},
        headers={"Prefer": "respond-async"},
    )
    assert restore.status_code == 202, restore.text
    job_id = restore.json()["job"]["id"]
    refused = stack.post("/resources/deprovision", json={"serviceId": service_id})

    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "conflict"
    assert job_id in refused.json()["error"]["message"]
    assert stack.get(f"/resources/{service_id}").status_code == 200
    job = wait_job(stack, restore.headers["Location"])
    assert job["status"] == "succeeded", job
    assert database.docs.count_documents({}) == 20000

    removed = stack.post("/resources/deprovision", json={"serviceId": service_id})
    assert removed.status_code == 200, removed.text
    admin = mongo_client(stack, *derive.db_admin_credentials(master_secret(stack)))
    assert env["MONGODB_DATABASE"] not in admin.list_database_names()
    admin.close()
    tenant.close()
