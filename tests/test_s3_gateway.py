"""The embedded object engine through its S3 gateway, with boto3's defaults.

Every call rclone would get wrong must either work or fail with NotImplemented
and leave the object's bytes alone; metadata must be the same for every key
and survive a restart.
"""

import hashlib
import http.client
import os
import sqlite3
import time
import uuid

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from corestore_project import derive
from corestore_project.engines.s3_metadata import MetadataStore

MB = 1024 * 1024
# The provisioned env of each bucket, for the few tests that need a client
# configured otherwise than boto3's default.
TENANT_ENV: dict[str, dict] = {}


def s3_client(endpoint, access_key, secret_key, region="us-east-1", config=None):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=config,
    )


def provision(stack, name="gw"):
    service_id = f"svc-{uuid.uuid4().hex[:10]}"
    response = stack.post(
        "/resources/provision",
        json={
            "serviceId": service_id,
            "serviceName": name,
            "capabilities": ["objectstorage"],
        },
    )
    assert response.status_code in (200, 201), response.text
    env = response.json()["env"]
    client = s3_client(
        env["AWS_ENDPOINT_URL"],
        env["AWS_ACCESS_KEY_ID"],
        env["AWS_SECRET_ACCESS_KEY"],
        env["AWS_REGION"],
    )
    TENANT_ENV[env["S3_BUCKET"]] = env
    return client, env["S3_BUCKET"], service_id


def admin_client(stack):
    secret = derive.read_master_secret(stack.data_dir, None)
    access_key, secret_key = derive.s3_admin_credentials(secret)
    return s3_client(f"http://127.0.0.1:{stack.ports['s3']}", access_key, secret_key)


@pytest.fixture(scope="module")
def tenant(stack):
    client, bucket, _ = provision(stack)
    return client, bucket


def error_of(excinfo) -> tuple[str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def put_original(client, bucket, key):
    body = os.urandom(4096)
    client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/x-orig")
    return body


def assert_unchanged(client, bucket, key, body):
    got = client.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/x-orig"


POLICY = '{"Version":"2012-10-17","Statement":[]}'
REFUSED_CALLS = {
    "put_object_acl": lambda c, b, k: c.put_object_acl(Bucket=b, Key=k, ACL="private"),
    "get_object_acl": lambda c, b, k: c.get_object_acl(Bucket=b, Key=k),
    "put_object_tagging": lambda c, b, k: c.put_object_tagging(
        Bucket=b, Key=k, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}
    ),
    "get_object_tagging": lambda c, b, k: c.get_object_tagging(Bucket=b, Key=k),
    "put_object_legal_hold": lambda c, b, k: c.put_object_legal_hold(
        Bucket=b, Key=k, LegalHold={"Status": "ON"}
    ),
    "put_object_retention": lambda c, b, k: c.put_object_retention(
        Bucket=b,
        Key=k,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": "2030-01-01T00:00:00Z"},
    ),
    "get_object_attributes": lambda c, b, k: c.get_object_attributes(
        Bucket=b, Key=k, ObjectAttributes=["ETag"]
    ),
    "put_bucket_acl": lambda c, b, k: c.put_bucket_acl(Bucket=b, ACL="private"),
    "put_bucket_policy": lambda c, b, k: c.put_bucket_policy(Bucket=b, Policy=POLICY),
    "get_bucket_policy": lambda c, b, k: c.get_bucket_policy(Bucket=b),
    "put_bucket_cors": lambda c, b, k: c.put_bucket_cors(
        Bucket=b,
        CORSConfiguration={
            "CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]
        },
    ),
    "get_bucket_cors": lambda c, b, k: c.get_bucket_cors(Bucket=b),
    "put_bucket_lifecycle": lambda c, b, k: c.put_bucket_lifecycle_configuration(
        Bucket=b,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "x",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "Expiration": {"Days": 1},
                }
            ]
        },
    ),
    "put_bucket_versioning": lambda c, b, k: c.put_bucket_versioning(
        Bucket=b, VersioningConfiguration={"Status": "Enabled"}
    ),
    "get_bucket_versioning": lambda c, b, k: c.get_bucket_versioning(Bucket=b),
    "list_object_versions": lambda c, b, k: c.list_object_versions(Bucket=b),
    "put_object_lock_configuration": lambda c, b, k: c.put_object_lock_configuration(
        Bucket=b, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
    ),
    "put_bucket_website": lambda c, b, k: c.put_bucket_website(
        Bucket=b, WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}}
    ),
    "put_bucket_encryption": lambda c, b, k: c.put_bucket_encryption(
        Bucket=b,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
            ]
        },
    ),
    "put_bucket_replication": lambda c, b, k: c.put_bucket_replication(
        Bucket=b,
        ReplicationConfiguration={
            "Role": "arn:aws:iam::1:role/x",
            "Rules": [
                {
                    "Status": "Enabled",
                    "Destination": {"Bucket": "arn:aws:s3:::other"},
                    "Prefix": "",
                }
            ],
        },
    ),
    "put_bucket_tagging": lambda c, b, k: c.put_bucket_tagging(
        Bucket=b, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}
    ),
    "put_object_with_tagging": lambda c, b, k: c.put_object(
        Bucket=b, Key=k, Body=b"overwritten", Tagging="a=b"
    ),
    "put_object_with_encryption": lambda c, b, k: c.put_object(
        Bucket=b, Key=k, Body=b"overwritten", ServerSideEncryption="AES256"
    ),
    "put_object_public_read": lambda c, b, k: c.put_object(
        Bucket=b, Key=k, Body=b"overwritten", ACL="public-read"
    ),
    "put_object_if_none_match": lambda c, b, k: c.put_object(
        Bucket=b, Key=k, Body=b"overwritten", IfNoneMatch="*"
    ),
    "copy_object_if_match": lambda c, b, k: c.copy_object(
        Bucket=b, Key=k, CopySource={"Bucket": b, "Key": k}, CopySourceIfMatch='"x"'
    ),
    "get_object_part_number": lambda c, b, k: c.get_object(
        Bucket=b, Key=k, PartNumber=1
    ),
    "list_with_other_delimiter": lambda c, b, k: c.list_objects_v2(
        Bucket=b, Delimiter="-"
    ),
}


@pytest.mark.parametrize("call", sorted(REFUSED_CALLS))
def test_refused_call_answers_not_implemented_and_keeps_the_object(tenant, call):
    client, bucket = tenant
    key = f"refused/{call}"
    body = put_original(client, bucket, key)

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        REFUSED_CALLS[call](client, bucket, key)

    assert error_of(excinfo) == ("NotImplemented", 501)
    assert_unchanged(client, bucket, key, body)


def test_upload_part_copy_is_refused_and_the_parts_stay_empty(tenant):
    client, bucket = tenant
    body = put_original(client, bucket, "upc/source")
    upload = client.create_multipart_upload(Bucket=bucket, Key="upc/target")

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.upload_part_copy(
            Bucket=bucket,
            Key="upc/target",
            UploadId=upload["UploadId"],
            PartNumber=1,
            CopySource={"Bucket": bucket, "Key": "upc/source"},
        )

    assert error_of(excinfo) == ("NotImplemented", 501)
    client.abort_multipart_upload(
        Bucket=bucket, Key="upc/target", UploadId=upload["UploadId"]
    )
    assert_unchanged(client, bucket, "upc/source", body)


def test_metadata_of_a_put_is_served_to_the_tenant_and_the_admin(stack, tenant):
    client, bucket = tenant
    client.put_object(
        Bucket=bucket,
        Key="meta/put.bin",
        Body=b"payload",
        ContentType="application/x-corestore",
        ContentEncoding="identity",
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="x.bin"',
        Metadata={"owner": "alice", "Mixed-Case": "Value"},
    )

    for reader in (client, admin_client(stack)):
        for answer in (
            reader.head_object(Bucket=bucket, Key="meta/put.bin"),
            reader.get_object(Bucket=bucket, Key="meta/put.bin"),
        ):
            assert answer["ContentType"] == "application/x-corestore"
            assert answer["ContentEncoding"] == "identity"
            assert answer["CacheControl"] == "max-age=60"
            assert answer["ContentDisposition"] == 'attachment; filename="x.bin"'
            assert answer["Metadata"] == {"owner": "alice", "mixed-case": "Value"}


def test_metadata_written_by_the_admin_is_served_to_the_tenant(stack, tenant):
    client, bucket = tenant
    admin_client(stack).put_object(
        Bucket=bucket,
        Key="meta/by-admin",
        Body=b"restored",
        ContentType="image/png",
        Metadata={"restored": "yes"},
    )

    # Each key has its own view of the directory, cached for up to 1 s.
    answer = _eventually(lambda: client.head_object(Bucket=bucket, Key="meta/by-admin"))
    assert answer["ContentType"] == "image/png"
    assert answer["Metadata"] == {"restored": "yes"}


def test_an_overwrite_replaces_the_metadata(tenant):
    client, bucket = tenant
    client.put_object(
        Bucket=bucket,
        Key="meta/over",
        Body=b"1",
        ContentType="a/b",
        Metadata={"x": "1"},
    )
    client.put_object(Bucket=bucket, Key="meta/over", Body=b"2")

    answer = client.head_object(Bucket=bucket, Key="meta/over")
    assert answer["Metadata"] == {}
    assert answer["ContentType"] == "binary/octet-stream"


def test_multipart_upload_keeps_the_metadata_of_its_creation(stack, tenant):
    client, bucket = tenant
    body = os.urandom(20 * MB)

    client.upload_fileobj(
        _reader(body),
        bucket,
        "meta/multipart",
        ExtraArgs={
            "ContentType": "video/x-test",
            "CacheControl": "no-store",
            "Metadata": {"parts": "many"},
        },
    )

    for reader in (client, admin_client(stack)):
        answer = reader.get_object(Bucket=bucket, Key="meta/multipart")
        assert answer["ContentType"] == "video/x-test"
        assert answer["CacheControl"] == "no-store"
        assert answer["Metadata"] == {"parts": "many"}
        assert _md5(answer["Body"].read()) == _md5(body)


def test_copy_object_copies_or_replaces_the_metadata(tenant):
    client, bucket = tenant
    client.put_object(
        Bucket=bucket,
        Key="copy/source",
        Body=b"copied bytes",
        ContentType="text/x-source",
        Metadata={"from": "source"},
    )
    source = {"Bucket": bucket, "Key": "copy/source"}

    client.copy_object(Bucket=bucket, Key="copy/same", CopySource=source)
    client.copy_object(
        Bucket=bucket,
        Key="copy/replaced",
        CopySource=source,
        MetadataDirective="REPLACE",
        ContentType="text/x-new",
        Metadata={"from": "request"},
    )

    same = client.get_object(Bucket=bucket, Key="copy/same")
    assert same["Body"].read() == b"copied bytes"
    assert (same["ContentType"], same["Metadata"]) == (
        "text/x-source",
        {"from": "source"},
    )
    replaced = client.get_object(Bucket=bucket, Key="copy/replaced")
    assert replaced["Body"].read() == b"copied bytes"
    assert replaced["ContentType"] == "text/x-new"
    assert replaced["Metadata"] == {"from": "request"}


def test_copy_onto_itself_replaces_the_metadata(tenant):
    client, bucket = tenant
    body = os.urandom(3 * MB)
    client.put_object(
        Bucket=bucket,
        Key="copy/self",
        Body=body,
        ContentType="a/b",
        Metadata={"x": "1"},
    )

    client.copy_object(
        Bucket=bucket,
        Key="copy/self",
        CopySource={"Bucket": bucket, "Key": "copy/self"},
        MetadataDirective="REPLACE",
        ContentType="c/d",
        Metadata={"y": "2"},
    )

    answer = client.get_object(Bucket=bucket, Key="copy/self")
    assert _md5(answer["Body"].read()) == _md5(body)
    assert (answer["ContentType"], answer["Metadata"]) == ("c/d", {"y": "2"})


def test_odd_keys_keep_their_metadata(tenant):
    client, bucket = tenant
    for key in ("odd/sp ace/ü+%&=?.txt", "odd/a%2Fb", "odd/~tilde!*'()"):
        client.put_object(Bucket=bucket, Key=key, Body=b"odd", ContentType="o/dd")
        assert client.head_object(Bucket=bucket, Key=key)["ContentType"] == "o/dd"


def test_delete_and_delete_objects_forget_the_metadata(tenant):
    client, bucket = tenant
    for key in ("del/one", "del/two", "del/three"):
        client.put_object(Bucket=bucket, Key=key, Body=b"x", Metadata={"old": key})

    client.delete_object(Bucket=bucket, Key="del/one")
    client.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "del/two"}, {"Key": "del/three"}]},
    )

    for key in ("del/one", "del/two", "del/three"):
        with pytest.raises(botocore.exceptions.ClientError):
            client.head_object(Bucket=bucket, Key=key)
    # A new object under an old key must not inherit the old metadata, even
    # when its bytes (and so its ETag) are the same.
    client.put_object(Bucket=bucket, Key="del/two", Body=b"x")
    assert client.head_object(Bucket=bucket, Key="del/two")["Metadata"] == {}


def test_range_get_answers_206_without_the_whole_object_checksum(tenant):
    client, bucket = tenant
    body = os.urandom(1000)
    client.put_object(Bucket=bucket, Key="range/small", Body=body)

    answer = client.get_object(Bucket=bucket, Key="range/small", Range="bytes=10-19")

    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert answer["ContentRange"] == "bytes 10-19/1000"
    assert answer["Body"].read() == body[10:20]
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    assert not [name for name in headers if name.startswith("x-amz-checksum-")]


def test_ranged_download_file_of_50_mb_works(tenant, tmp_path):
    client, bucket = tenant
    source = tmp_path / "source"
    source.write_bytes(os.urandom(50 * MB))
    # One PUT: rclone then stores the whole object's checksum, which a
    # ranged GET must not repeat.
    with source.open("rb") as handle:
        client.put_object(Bucket=bucket, Key="range/big", Body=handle)

    target = tmp_path / "target"
    client.download_file(bucket, "range/big", str(target))

    assert _md5_file(target) == _md5_file(source)


def test_managed_copy_of_20_mb_works_or_fails_without_an_empty_object(tenant):
    client, bucket = tenant
    body = os.urandom(20 * MB)
    client.put_object(Bucket=bucket, Key="copy/big", Body=body)

    try:
        client.copy({"Bucket": bucket, "Key": "copy/big"}, bucket, "copy/big-copy")
    except botocore.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "NotImplemented"
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            client.head_object(Bucket=bucket, Key="copy/big-copy")
        assert error_of(excinfo)[1] == 404
    else:
        copied = client.get_object(Bucket=bucket, Key="copy/big-copy")["Body"].read()
        assert _md5(copied) == _md5(body)
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_copy_object_of_20_mb_works(tenant):
    client, bucket = tenant
    body = os.urandom(20 * MB)
    client.put_object(Bucket=bucket, Key="copy/direct", Body=body, ContentType="a/b")

    client.copy_object(
        Bucket=bucket, Key="copy/direct-copy", CopySource=f"{bucket}/copy/direct"
    )

    answer = client.get_object(Bucket=bucket, Key="copy/direct-copy")
    assert _md5(answer["Body"].read()) == _md5(body)
    assert answer["ContentType"] == "a/b"


def test_downloads_cut_short_leave_later_connections_intact(stack, tenant):
    client, bucket = tenant
    body = os.urandom(30 * MB)
    client.put_object(Bucket=bucket, Key="cut/big", Body=body)
    env = TENANT_ENV[bucket]
    # boto3 presigns with SigV2 by default, which the engine refuses.
    presigner = s3_client(
        env["AWS_ENDPOINT_URL"],
        env["AWS_ACCESS_KEY_ID"],
        env["AWS_SECRET_ACCESS_KEY"],
        env["AWS_REGION"],
        Config(signature_version="s3v4"),
    )
    url = presigner.generate_presigned_url(
        "get_object", {"Bucket": bucket, "Key": "cut/big"}
    )
    path = url.split(str(stack.ports["s3"]), 1)[1]

    for _ in range(5):
        connection = http.client.HTTPConnection("127.0.0.1", stack.ports["s3"])
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200
        response.read(5 * MB)
        connection.close()

    # A descriptor of a dropped connection is reused by the next ones: they
    # must get their own answers, whole.
    for _ in range(3):
        answer = client.get_object(Bucket=bucket, Key="cut/big")
        assert _md5(answer["Body"].read()) == _md5(body)


def test_conditional_get_is_evaluated(tenant):
    client, bucket = tenant
    client.put_object(Bucket=bucket, Key="cond/x", Body=b"abc")
    etag = client.head_object(Bucket=bucket, Key="cond/x")["ETag"]

    assert client.get_object(Bucket=bucket, Key="cond/x", IfMatch=etag)["Body"].read()
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.get_object(Bucket=bucket, Key="cond/x", IfMatch='"other"')
    assert error_of(excinfo)[1] == 412
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.get_object(Bucket=bucket, Key="cond/x", IfNoneMatch=etag)
    assert error_of(excinfo)[1] == 304


def test_tenants_cannot_read_each_other(stack, tenant):
    client, bucket = tenant
    other, other_bucket, _ = provision(stack, "gw-other")
    client.put_object(Bucket=bucket, Key="private", Body=b"mine")

    with pytest.raises(botocore.exceptions.ClientError):
        other.get_object(Bucket=bucket, Key="private")
    with pytest.raises(botocore.exceptions.ClientError):
        client.put_object(Bucket=other_bucket, Key="intrusion", Body=b"x")


def test_rclone_listens_on_a_unix_socket_only(stack):
    config = (stack.data_dir / "run" / "supervisord.conf").read_text()
    rclone_line = next(line for line in config.splitlines() if "serve s3" in line)

    assert "--addr unix://" in rclone_line
    assert f":{stack.ports['s3']}" not in rclone_line
    assert (stack.data_dir / "run" / "rclone-s3.sock").exists()


def test_metadata_survives_a_restart(private_stack):
    node = private_stack.start()
    client, bucket, service_id = provision(node, "restart")
    client.put_object(
        Bucket=bucket,
        Key="keep/put",
        Body=b"kept",
        ContentType="text/x-kept",
        Metadata={"survives": "restart"},
    )
    client.upload_fileobj(
        _reader(os.urandom(12 * MB)),
        bucket,
        "keep/multipart",
        ExtraArgs={"ContentType": "video/x-kept", "Metadata": {"parts": "yes"}},
    )

    node.stop()
    node.start()

    client, bucket, _ = _provision_again(node, service_id)
    for reader in (client, admin_client(node)):
        put = reader.get_object(Bucket=bucket, Key="keep/put")
        assert put["Body"].read() == b"kept"
        assert put["ContentType"] == "text/x-kept"
        assert put["Metadata"] == {"survives": "restart"}
        multipart = reader.head_object(Bucket=bucket, Key="keep/multipart")
        assert multipart["ContentType"] == "video/x-kept"
        assert multipart["Metadata"] == {"parts": "yes"}


def test_deprovision_drops_the_metadata(private_stack):
    node = private_stack.start()
    client, bucket, service_id = provision(node, "dropped")
    client.put_object(Bucket=bucket, Key="gone", Body=b"x", Metadata={"a": "b"})

    response = node.post("/resources/deprovision", json={"serviceId": service_id})

    assert response.status_code in (200, 204), response.text
    with sqlite3.connect(node.data_dir / "s3" / "metadata.sqlite3") as db:
        rows = db.execute(
            "SELECT count(*) FROM objects WHERE bucket = ?", (bucket,)
        ).fetchone()
    assert rows == (0,)


def _provision_again(node, service_id):
    response = node.post(
        "/resources/provision",
        json={
            "serviceId": service_id,
            "serviceName": "restart",
            "capabilities": ["objectstorage"],
        },
    )
    assert response.status_code in (200, 201), response.text
    env = response.json()["env"]
    client = s3_client(
        env["AWS_ENDPOINT_URL"], env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    )
    return client, env["S3_BUCKET"], service_id


def _eventually(call, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except botocore.exceptions.ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _reader(body: bytes):
    import io

    return io.BytesIO(body)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _md5_file(path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(MB):
            digest.update(chunk)
    return digest.hexdigest()


# Calls rclone would crash on, or must not allow a tenant.


def test_copy_source_without_a_bucket_key_split(tenant):
    client, bucket = tenant
    key = f"split-{uuid.uuid4().hex[:8]}"
    client.put_object(Bucket=bucket, Key=key, Body=b"source")
    for source in (f"{bucket}%2F{key}", bucket, f"/{bucket}/"):
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            client.copy_object(Bucket=bucket, Key=f"{key}-copy", CopySource=source)
        assert error_of(excinfo) == ("InvalidArgument", 400), source

    # The gateway and rclone still serve, and a proper copy works.
    client.copy_object(Bucket=bucket, Key=f"{key}-copy", CopySource=f"{bucket}/{key}")
    copied = client.get_object(Bucket=bucket, Key=f"{key}-copy")["Body"].read()
    assert copied == b"source"
    client.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": key}, {"Key": f"{key}-copy"}]},
    )


def test_tenant_cannot_create_or_delete_buckets(stack, tenant):
    client, bucket = tenant
    foreign = f"grab-{uuid.uuid4().hex[:8]}"
    for name in (foreign, bucket):
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            client.create_bucket(Bucket=name)
        assert error_of(excinfo) == ("AccessDenied", 403)

    empty_client, empty_bucket, _ = provision(stack, "empty")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        empty_client.delete_bucket(Bucket=empty_bucket)
    assert error_of(excinfo) == ("AccessDenied", 403)
    empty_client.head_bucket(Bucket=empty_bucket)

    admin = admin_client(stack)
    assert foreign not in {b["Name"] for b in admin.list_buckets()["Buckets"]}
    admin.create_bucket(Bucket=foreign)
    admin.delete_bucket(Bucket=foreign)


def test_interrupted_uploads_are_swept_at_start(private_stack):
    bucket_dir = private_stack.data_dir / "s3" / "buckets" / "leftovers"
    (bucket_dir / "dir").mkdir(parents=True)
    (bucket_dir / "kept.txt").write_bytes(b"kept")
    leftovers = [
        bucket_dir / ".rclone_temp_put_123abc",
        bucket_dir / "dir" / ".rclone_temp_multipart_456def",
    ]
    for path in leftovers:
        path.write_bytes(b"partial")
    store = MetadataStore(private_stack.data_dir / "s3" / "metadata.sqlite3")
    store.start_upload("upload-1", "leftovers", "big", {})
    store.close()

    private_stack.start()

    assert not any(path.exists() for path in leftovers)
    assert (bucket_dir / "kept.txt").read_bytes() == b"kept"
    store = MetadataStore(private_stack.data_dir / "s3" / "metadata.sqlite3")
    try:
        assert store.upload_meta("upload-1") is None
    finally:
        store.close()


def test_refusal_log_line_escapes_control_characters(stack):
    marker = uuid.uuid4().hex[:8]
    connection = http.client.HTTPConnection("127.0.0.1", stack.ports["s3"], 30)
    try:
        connection.request("PUT", f"/bucket/forged-{marker}%0aINFO%20x?tagging")
        assert connection.getresponse().status == 501
    finally:
        connection.close()
    time.sleep(0.5)

    log = (stack.data_dir / "log" / "s3gateway.log").read_text().splitlines()
    lines = [line for line in log if marker in line]
    assert len(lines) == 1, lines
    assert f"/bucket/forged-{marker}%0AINFO x" in lines[0]
