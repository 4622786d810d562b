"""Database and bucket dumps against the running stack's real engines."""

import datetime
import hashlib
import io
import json
import os
import secrets
import time
import tracemalloc
import uuid
from pathlib import Path

import pymongo
import pytest
from bson import (
    Binary,
    Code,
    DBRef,
    Decimal128,
    Int64,
    MaxKey,
    MinKey,
    ObjectId,
    Regex,
    Timestamp,
    encode,
)
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from minio import Minio

from corestore_project import derive
from snapshots import dumpers

RAW = CodecOptions(document_class=RawBSONDocument)
FUTURE = datetime.datetime(2199, 1, 1, tzinfo=datetime.UTC)
MB = 1024 * 1024


def master_secret(node) -> str:
    return (node.data_dir / "master.secret").read_text().strip()


def mongo_client(node, username, password, auth_source="admin"):
    return pymongo.MongoClient(
        host="127.0.0.1",
        port=node.ports["db"],
        username=username,
        password=password,
        authSource=auth_source,
        directConnection=True,
        retryWrites=False,
        serverSelectionTimeoutMS=5000,
        uuidRepresentation="standard",
    )


@pytest.fixture(scope="module")
def mongo(stack):
    client = mongo_client(stack, *derive.db_admin_credentials(master_secret(stack)))
    yield client
    client.close()


@pytest.fixture
def db_name(mongo):
    name = f"dump-{secrets.token_hex(4)}"
    yield name
    mongo.drop_database(name)


def minio_client(node, access_key, secret_key) -> Minio:
    return Minio(
        f"127.0.0.1:{node.ports['s3']}",
        access_key=access_key,
        secret_key=secret_key,
        secure=False,
        region="us-east-1",
    )


@pytest.fixture
def tenant(stack):
    """A provisioned service: its id and the env its workload gets."""
    service_id = f"dumps-{secrets.token_hex(4)}"
    body = {
        "serviceId": service_id,
        "serviceName": "dumps",
        "capabilities": ["database", "objectstorage"],
    }
    response = stack.post("/resources/provision", json=body)
    assert response.status_code == 201, response.text
    yield {"serviceId": service_id, "env": response.json()["env"]}
    stack.post("/resources/deprovision", json={"serviceId": service_id})


@pytest.fixture
def s3(stack, tenant) -> Minio:
    """The tenant's own key, the one the snapshot jobs use for its bucket."""
    env = tenant["env"]
    return minio_client(stack, env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture
def bucket(tenant) -> str:
    return tenant["env"]["S3_BUCKET"]


# Databases -------------------------------------------------------------------


def every_bson_type(number: int) -> dict:
    return {
        "_id": ObjectId(),
        "double": 1.5 + number,
        "string": f"zeichenkette {number} ✓",
        "object": {"nested": {"deeper": [1, {"x": None}]}},
        "array": [1, "two", 3.0, [4]],
        "binary": Binary(os.urandom(16)),
        "user_binary": Binary(b"\x00\x01", 0x80),
        "uuid": uuid.uuid4(),
        "legacy_uuid": Binary(os.urandom(16), 3),
        "object_id": ObjectId(),
        "bool": number % 2 == 0,
        "datetime": FUTURE,
        "null": None,
        "regex": Regex(r"^a.*b$", "imsx"),
        "javascript": Code("function () { return 1; }"),
        "javascript_scope": Code("function () { return x; }", {"x": 1}),
        "int32": number,
        "timestamp": Timestamp(1_700_000_000, number + 1),
        "int64": Int64(2**40 + number),
        "decimal128": Decimal128("1234.5678901234567890123456789"),
        "min_key": MinKey(),
        "max_key": MaxKey(),
        "dbref": DBRef("other", number),
        "negative_zero": -0.0,
        "nan": float("nan"),
    }


INDEXES = [
    ([("double", 1), ("int64", -1)], {"name": "compound"}),
    ([("object_id", 1)], {"unique": True}),
    ([("datetime", 1)], {"expireAfterSeconds": 3600, "name": "ttl"}),
    (
        [("string", 1)],
        {"partialFilterExpression": {"int32": {"$gt": 2}}, "name": "partial"},
    ),
    ([("bool", 1)], {"sparse": True}),
]


def fill_database(database):
    types = database.types
    types.insert_many([every_bson_type(n) for n in range(10)])
    for keys, options in INDEXES:
        types.create_index(keys, **options)

    database.create_collection("capped", capped=True, size=65536, max=50)
    # SecantusDB keeps the capped options but does not cap: stay below max.
    database.capped.insert_many({"n": n} for n in range(40))
    database.create_collection(
        "validated",
        validator={"$jsonSchema": {"required": ["name"]}},
        validationLevel="moderate",
    )
    database.validated.insert_one({"name": "kept"})
    database.create_collection("odd/name with space")
    database["odd/name with space"].insert_one({"_id": "odd"})
    database.create_collection("empty")
    database.create_collection("collated", collation={"locale": "de", "strength": 2})
    database.collated.insert_one({"word": "Straße"})
    database.command("create", "types_view", viewOn="types", pipeline=[])


def snapshot_state(database) -> dict:
    """Every collection's raw documents, index specs and options."""
    state = {}
    for info in database.list_collections():
        name = info["name"]
        entry = {"type": info.get("type"), "options": info.get("options")}
        if info.get("type") != "view":
            raw = database.get_collection(name, codec_options=RAW)
            entry["documents"] = [document.raw for document in raw.find()]
            entry["indexes"] = sorted(
                (dict(spec) for spec in database[name].list_indexes()),
                key=lambda spec: spec["name"],
            )
        state[name] = entry
    return state


def damage_database(database):
    database.types.delete_many({"int32": {"$lt": 5}})
    database.types.update_many({}, {"$set": {"string": "overwritten"}})
    database.types.drop_index("ttl")
    database.types.create_index("array", name="added")
    database.drop_collection("capped")
    database.validated.drop()
    database.create_collection("validated")
    database.odd_new.insert_one({"extra": True})
    database.drop_collection("types_view")


def test_dump_writes_mongodump_layout(mongo, db_name, tmp_path):
    database = mongo[db_name]
    fill_database(database)

    stats = dumpers.dump_database(mongo, db_name, tmp_path / "dump")

    files = sorted(path.name for path in (tmp_path / "dump").iterdir())
    assert "types.bson" in files
    assert "odd%2Fname with space.bson" in files
    assert "types_view.metadata.json" in files
    assert "types_view.bson" not in files
    metadata = json.loads((tmp_path / "dump" / "types.metadata.json").read_text())
    assert metadata["collectionName"] == "types"
    assert metadata["type"] == "collection"
    assert {"v": {"$numberInt": "2"}, "key": {"_id": {"$numberInt": "1"}}} in [
        {key: spec[key] for key in ("v", "key")} for spec in metadata["indexes"]
    ]
    capped = json.loads((tmp_path / "dump" / "capped.metadata.json").read_text())
    assert capped["options"]["capped"] is True
    assert stats["collections"] == 6
    assert stats["views"] == 1
    assert stats["indexes"] == len(INDEXES)
    assert stats["documents"] == 10 + 40 + 1 + 1 + 1
    assert stats["bytes"] == sum(
        path.stat().st_size for path in (tmp_path / "dump").glob("*.bson")
    )


def test_database_round_trip_is_byte_equal(mongo, db_name, tmp_path):
    database = mongo[db_name]
    fill_database(database)
    before = snapshot_state(database)
    dumpers.dump_database(mongo, db_name, tmp_path / "dump")

    damage_database(database)
    assert snapshot_state(database) != before
    stats = dumpers.restore_database(mongo, db_name, tmp_path / "dump")

    assert snapshot_state(database) == before
    assert stats["dropped"] == 1
    assert stats["documents"] == 53
    # The options are in force again, not only listed.
    with pytest.raises(pymongo.errors.WriteError):
        database.validated.insert_one({"no_name": True})


def test_restore_keeps_the_tenant_credentials_working(mongo, tenant, tmp_path):
    env = tenant["env"]
    db_name = env["MONGODB_DATABASE"]
    workload = pymongo.MongoClient(env["MONGODB_URI"], serverSelectionTimeoutMS=5000)
    notes = workload[db_name].notes
    notes.insert_one({"_id": 1, "text": "before"})
    notes.create_index("text", unique=True)
    dumpers.dump_database(mongo, db_name, tmp_path / "dump")
    notes.update_one({"_id": 1}, {"$set": {"text": "after"}})
    workload[db_name].scratch.insert_one({"_id": "gone after restore"})

    dumpers.restore_database(mongo, db_name, tmp_path / "dump")

    assert notes.find_one({"_id": 1})["text"] == "before"
    assert workload[db_name].list_collection_names() == ["notes"]
    notes.insert_one({"_id": 2, "text": "still writable"})
    workload.close()
    # A new connection authenticates too: the user was never dropped.
    again = pymongo.MongoClient(env["MONGODB_URI"], serverSelectionTimeoutMS=5000)
    assert again[db_name].notes.count_documents({}) == 2
    again.close()


def test_failed_restore_can_be_retried(mongo, db_name, tmp_path, monkeypatch):
    database = mongo[db_name]
    database.big.insert_many({"n": n, "pad": "x" * 500} for n in range(5000))
    database.big.create_index("n", unique=True)
    database.other.insert_one({"_id": 1})
    before = snapshot_state(database)
    dumpers.dump_database(mongo, db_name, tmp_path / "dump")
    database.big.delete_many({"n": {"$gt": 100}})

    def fail_after_first_report(done):
        raise RuntimeError("worker lost")

    # Reports come at most twice a second; make the first one come at once.
    monkeypatch.setattr(dumpers, "PROGRESS_INTERVAL", 0)
    with pytest.raises(RuntimeError):
        dumpers.restore_database(
            mongo, db_name, tmp_path / "dump", fail_after_first_report
        )
    monkeypatch.undo()
    assert database.big.count_documents({}) < 5000

    dumpers.restore_database(mongo, db_name, tmp_path / "dump")

    assert snapshot_state(database) == before


def peak_memory(function, *args) -> int:
    """The most memory Python held at once while running function(*args)."""
    tracemalloc.start()
    try:
        function(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_dump_streams_and_reports_progress(mongo, db_name, tmp_path):
    database = mongo[db_name]
    payload = "y" * 1000
    for start in range(0, 20_000, 5000):
        database.bulk.insert_many(
            {"n": n, "payload": payload} for n in range(start, start + 5000)
        )
    reports = []

    started = time.monotonic()
    stats = dumpers.dump_database(mongo, db_name, tmp_path / "dump", reports.append)
    dump_seconds = time.monotonic() - started
    # SecantusDB drops a full collection ten times slower than it empties one.
    database.bulk.delete_many({})
    database.bulk.drop()
    started = time.monotonic()
    dumpers.restore_database(mongo, db_name, tmp_path / "dump")
    restore_seconds = time.monotonic() - started

    assert stats["documents"] == 20_000
    assert reports == sorted(reports)
    assert reports[-1] == stats["bytes"]
    assert database.bulk.count_documents({}) == 20_000
    # Streaming: a few batches in memory, never the 20 MB collection.
    dump_peak = peak_memory(dumpers.dump_database, mongo, db_name, tmp_path / "again")
    restore_peak = peak_memory(
        dumpers.restore_database, mongo, db_name, tmp_path / "dump"
    )
    assert dump_peak < 8 * MB and restore_peak < 24 * MB
    megabytes = stats["bytes"] / MB
    print(
        f"database: {megabytes:.1f} MB dumped at {megabytes / dump_seconds:.1f} MB/s,"
        f" restored at {megabytes / restore_seconds:.1f} MB/s; peak memory"
        f" {dump_peak / MB:.1f} MB dumping, {restore_peak / MB:.1f} MB restoring"
    )


def test_restore_reads_a_dump_without_collection_names(mongo, db_name, tmp_path):
    # Older mongodump versions write neither collectionName nor type, and a
    # .bson file may come without its metadata file.
    (tmp_path / "people%2Fold.bson").write_bytes(
        encode({"_id": 1, "name": "Ada"}) + encode({"_id": 2, "name": "Grace"})
    )
    (tmp_path / "people%2Fold.metadata.json").write_text(
        '{"options": {}, "indexes": [{"v": {"$numberInt": "2"}, "key": '
        '{"name": {"$numberInt": "1"}}, "name": "by_name", "unique": true}]}'
    )
    (tmp_path / "bare.bson").write_bytes(encode({"_id": "x"}))

    stats = dumpers.restore_database(mongo, db_name, tmp_path)

    database = mongo[db_name]
    assert sorted(database.list_collection_names()) == ["bare", "people/old"]
    assert database["people/old"].find_one({"_id": 2})["name"] == "Grace"
    assert database["people/old"].index_information()["by_name"]["unique"]
    assert stats["documents"] == 3


def test_collection_file_names_are_safe_and_distinct():
    names = ["a/b", "a%2Fb", "..", "x" * 300, "x" * 299 + "y", "ünï cøde"]
    stems = [dumpers.collection_file_stem(name) for name in names]

    assert len(set(stems)) == len(names)
    assert all("/" not in stem and len(stem.encode()) <= 200 for stem in stems)
    assert stems[0] == "a%2Fb" and stems[1] == "a%252Fb"


def test_dump_refuses_a_directory_with_leftovers(mongo, db_name, tmp_path):
    (tmp_path / "stale.bson").write_bytes(b"")

    with pytest.raises(dumpers.DumpError):
        dumpers.dump_database(mongo, db_name, tmp_path)


def test_restore_refuses_a_corrupt_dump_before_touching_anything(
    mongo, db_name, tmp_path
):
    mongo[db_name].items.insert_many([{"n": n} for n in range(3)])
    mongo[db_name].zzz.insert_many([{"n": n} for n in range(3)])
    dumpers.dump_database(mongo, db_name, tmp_path / "dump")
    mongo[db_name].items.insert_one({"n": "new"})
    data = (tmp_path / "dump" / "zzz.bson").read_bytes()
    (tmp_path / "dump" / "zzz.bson").write_bytes(data[:-3])

    with pytest.raises(dumpers.DumpError):
        dumpers.restore_database(mongo, db_name, tmp_path / "dump")

    assert mongo[db_name].items.count_documents({}) == 4


# Buckets ---------------------------------------------------------------------

OBJECTS = {
    "top.txt": (b"top level", "text/plain; charset=utf-8", {}, {"owner": "alice"}),
    "a/b/c/deep.json": (
        b'{"deep": true}',
        "application/json",
        {
            "Cache-Control": "max-age=3600",
            "Content-Disposition": 'attachment; filename="deep.json"',
        },
        {"color": "blue", "sha": "abc123"},
    ),
    "a/b/gzipped.gz": (
        b"\x1f\x8b not really gzip",
        "text/plain",
        {"Content-Encoding": "gzip", "Content-Language": "de-CH"},
        {},
    ),
    "empty-object": (b"", "application/x-empty", {}, {"empty": "yes"}),
    # Both engines refuse '.' and '..' segments; these dots are only close.
    "..hidden/...dots/%2e%2e/escape": (b"stays inside", "text/plain", {}, {}),
    "weird/ünïcødé ?#%&=+ key": (b"odd", "application/octet-stream", {}, {}),
}


def put(s3, bucket, key, data, content_type, headers, metadata, part_size=0):
    meta = dict(headers)
    meta.update({f"x-amz-meta-{name}": value for name, value in metadata.items()})
    s3.put_object(
        bucket,
        key,
        io.BytesIO(data),
        len(data),
        content_type=content_type,
        metadata=meta,
        part_size=part_size,
    )


def bucket_state(s3, bucket) -> dict:
    state = {}
    for item in s3.list_objects(bucket, recursive=True):
        response = s3.get_object(bucket, item.object_name)
        try:
            body = response.read(decode_content=False)
            headers = response.headers
        finally:
            response.close()
            response.release_conn()
        state[item.object_name] = {
            "md5": hashlib.md5(body).hexdigest(),
            "size": len(body),
            "content_type": headers.get("Content-Type"),
            "headers": {
                name: headers.get(name)
                for name in ("Cache-Control", "Content-Disposition")
                + ("Content-Encoding", "Content-Language")
            },
            "metadata": {
                name.lower(): value
                for name, value in headers.items()
                if name.lower().startswith("x-amz-meta-")
            },
        }
    return state


@pytest.fixture(scope="module")
def big_data():
    return os.urandom(50 * MB + 12345)


def fill_bucket(s3, bucket, big_data):
    # The large object goes up in 8 MB parts. rclone answers the ETag of the
    # whole file's md5 even for multipart uploads, so this cannot be asserted.
    for key, (data, content_type, headers, metadata) in OBJECTS.items():
        put(s3, bucket, key, data, content_type, headers, metadata)
    put(
        s3,
        bucket,
        "large/blob.bin",
        big_data,
        "application/x-big",
        {},
        {"parts": "many"},
        part_size=8 * MB,
    )


def test_bucket_dump_layout_stays_inside_the_directory(s3, bucket, tmp_path):
    for key, (data, content_type, headers, metadata) in OBJECTS.items():
        put(s3, bucket, key, data, content_type, headers, metadata)

    stats = dumpers.dump_bucket(s3, bucket, tmp_path / "dump")

    total = sum(len(data) for data, *_ in OBJECTS.values())
    assert stats == {"objects": len(OBJECTS), "bytes": total, "vanished": 0}
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert all(path.is_relative_to(tmp_path / "dump") for path in files)
    manifest = [
        json.loads(line) for line in (tmp_path / "dump" / "manifest.jsonl").open()
    ]
    assert {entry["key"] for entry in manifest} == set(OBJECTS)
    deep = next(entry for entry in manifest if entry["key"] == "a/b/c/deep.json")
    assert deep["contentType"] == "application/json"
    assert deep["metadata"] == {"color": "blue", "sha": "abc123"}
    assert deep["headers"]["Cache-Control"] == "max-age=3600"
    assert (tmp_path / "dump" / deep["path"]).read_bytes() == b'{"deep": true}'


def test_bucket_round_trip(s3, bucket, big_data, tmp_path):
    fill_bucket(s3, bucket, big_data)
    before = bucket_state(s3, bucket)
    reports = []

    started = time.monotonic()
    dumped = dumpers.dump_bucket(s3, bucket, tmp_path / "dump", reports.append)
    dump_seconds = time.monotonic() - started

    s3.remove_object(bucket, "a/b/c/deep.json")
    s3.remove_object(bucket, "empty-object")
    put(s3, bucket, "top.txt", b"changed", "text/html", {}, {"owner": "mallory"})
    put(s3, bucket, "large/blob.bin", b"small now", "text/plain", {}, {})
    put(s3, bucket, "new/extra.txt", b"not in the dump", "text/plain", {}, {})
    # Same bytes, other headers: must be uploaded again, not skipped.
    weird = "weird/ünïcødé ?#%&=+ key"
    put(s3, bucket, weird, b"odd", "text/csv", {"Cache-Control": "no-store"}, {})
    assert bucket_state(s3, bucket) != before

    started = time.monotonic()
    restored = dumpers.restore_bucket(s3, bucket, tmp_path / "dump")
    restore_seconds = time.monotonic() - started

    assert bucket_state(s3, bucket) == before
    assert restored["deleted"] == 1
    assert restored["objects"] == dumped["objects"] == len(OBJECTS) + 1
    # Only what differs went up again.
    assert restored["uploaded"] == 5
    assert restored["unchanged"] == len(OBJECTS) + 1 - 5
    assert reports == sorted(reports) and reports[-1] == dumped["bytes"]
    # Streaming: 1 MB chunks down; up, the SDK holds a few 16 MB parts at once.
    dump_peak = peak_memory(dumpers.dump_bucket, s3, bucket, tmp_path / "again")
    s3.remove_object(bucket, "large/blob.bin")
    restore_peak = peak_memory(dumpers.restore_bucket, s3, bucket, tmp_path / "dump")
    assert dump_peak < 8 * MB and restore_peak < 80 * MB
    megabytes = dumped["bytes"] / MB
    print(
        f"bucket: {megabytes:.1f} MB dumped at {megabytes / dump_seconds:.1f} MB/s,"
        f" restored at {megabytes / restore_seconds:.1f} MB/s; peak memory"
        f" {dump_peak / MB:.1f} MB dumping, {restore_peak / MB:.1f} MB restoring"
    )


def test_failed_bucket_restore_can_be_retried(s3, bucket, tmp_path, monkeypatch):
    for number in range(20):
        put(s3, bucket, f"item/{number:02}", os.urandom(1000), "text/plain", {}, {})
    before = bucket_state(s3, bucket)
    dumpers.dump_bucket(s3, bucket, tmp_path / "dump")
    for number in range(20):
        put(s3, bucket, f"item/{number:02}", b"overwritten", "text/plain", {}, {})

    def fail_in_the_fifth_object(done):
        if done >= 4500:
            raise RuntimeError("worker lost")

    # Reports come at most twice a second; make every read report.
    monkeypatch.setattr(dumpers, "PROGRESS_INTERVAL", 0)
    with pytest.raises(RuntimeError):
        dumpers.restore_bucket(s3, bucket, tmp_path / "dump", fail_in_the_fifth_object)
    monkeypatch.undo()
    assert bucket_state(s3, bucket) != before

    stats = dumpers.restore_bucket(s3, bucket, tmp_path / "dump")

    assert bucket_state(s3, bucket) == before
    assert stats["unchanged"] == 4
    assert stats["uploaded"] == 16


def test_bucket_restore_refuses_a_dump_with_a_missing_file(s3, bucket, tmp_path):
    for number in range(20):
        put(s3, bucket, f"item/{number}", os.urandom(1000), "text/plain", {}, {})
    dumpers.dump_bucket(s3, bucket, tmp_path / "dump")
    for number in range(10):
        s3.remove_object(bucket, f"item/{number}")
    entries = (tmp_path / "dump" / "manifest.jsonl").read_text().splitlines()
    (tmp_path / "dump" / json.loads(entries[5])["path"]).unlink()

    with pytest.raises(dumpers.DumpError):
        dumpers.restore_bucket(s3, bucket, tmp_path / "dump")

    assert len(bucket_state(s3, bucket)) == 10


def test_restored_metadata_is_seen_by_other_keys(stack, s3, bucket, tmp_path):
    # Behaviour of the engine, not of the dumper: on the embedded engine the
    # S3 gateway keeps metadata for every key, not only for the writing one.
    put(s3, bucket, "shared", b"x", "text/markdown", {}, {"who": "tenant"})
    dumpers.dump_bucket(s3, bucket, tmp_path / "dump")
    s3.remove_object(bucket, "shared")
    dumpers.restore_bucket(s3, bucket, tmp_path / "dump")

    admin = minio_client(stack, *derive.s3_admin_credentials(master_secret(stack)))
    seen = admin.stat_object(bucket, "shared")

    assert seen.content_type == "text/markdown"
    assert seen.metadata["x-amz-meta-who"] == "tenant"


def test_restore_refuses_an_incomplete_bucket_dump(s3, bucket, tmp_path):
    put(s3, bucket, "kept", b"kept", "text/plain", {}, {})
    (tmp_path / "dump").mkdir()
    (tmp_path / "dump" / "manifest.jsonl.partial").write_text("")

    with pytest.raises(dumpers.DumpError):
        dumpers.restore_bucket(s3, bucket, tmp_path / "dump")

    assert set(bucket_state(s3, bucket)) == {"kept"}


def test_restore_refuses_a_damaged_manifest(s3, bucket, tmp_path):
    put(s3, bucket, "kept", b"kept", "text/plain", {}, {})
    dumpers.dump_bucket(s3, bucket, tmp_path / "dump")
    with open(tmp_path / "dump" / "manifest.jsonl", "a") as manifest:
        manifest.write('{"key": "half a line", "si\n')
    s3.remove_object(bucket, "kept")

    with pytest.raises(dumpers.DumpError):
        dumpers.restore_bucket(s3, bucket, tmp_path / "dump")

    assert bucket_state(s3, bucket) == {}


def test_bucket_dump_of_an_empty_bucket_empties_it_on_restore(s3, bucket, tmp_path):
    stats = dumpers.dump_bucket(s3, bucket, tmp_path / "dump")
    put(s3, bucket, "later", b"later", "text/plain", {}, {})

    dumpers.restore_bucket(s3, bucket, tmp_path / "dump")

    assert stats["objects"] == 0
    assert bucket_state(s3, bucket) == {}


def test_object_data_path_is_safe_for_any_key():
    for key in ("../../etc/passwd", "/abs", "a/../b", "", "x" * 1024, "a\x00b"):
        path = Path(dumpers.object_data_path(key))
        assert not path.is_absolute()
        assert path.parts[0] == "data" and ".." not in path.parts
