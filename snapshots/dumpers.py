"""Logical dumps of a tenant's database and bucket into a directory, and back.

The snapshot jobs archive these directories with restic; nothing here knows
about the archive, the Job model or the engines' adapters. Every function takes
a ready client and an optional ``progress(bytes_done)`` callback, which gets the
running total of bytes read or written, at most a few times a second and once at
the end.

Database dumps use mongodump's directory layout, so that mongorestore can read
them and we can read mongodump's: one ``<collection>.bson`` file of concatenated
BSON documents and one ``<collection>.metadata.json`` (options, indexes, uuid,
collectionName, type, in canonical extended JSON) per collection; a view has a
metadata file only. Documents travel as raw BSON end to end, so every type and
every byte survives.

A dump directory is staging for the archive, read right after it is written:
nothing here is fsynced, as a crash means taking the dump again anyway.

Bucket dumps are a ``manifest.jsonl`` (one object per line: key, size, md5,
etag, content type, standard headers, user metadata) plus the bytes of each
object under ``data/``, named by a hash of its key: object keys may contain
``..``, leading slashes or names no filesystem accepts, and a hash can never
escape the dump directory.
"""

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, unquote

from bson import json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.son import SON
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from pymongo import MongoClient
from pymongo.database import Database

logger = logging.getLogger(__name__)

Progress = Callable[[int], object] | None

RAW = CodecOptions(document_class=RawBSONDocument)
# mongodump writes canonical extended JSON: {"$numberInt": "2"} keeps the int32
# of an index key apart from a double, which matters when it is recreated.
METADATA_JSON = json_util.CANONICAL_JSON_OPTIONS

# A BSON document is at most 16 MiB; mongod accepts a little more for internal
# fields. Anything bigger in a length prefix means a corrupt file.
MAX_DOCUMENT_SIZE = 16 * 1024 * 1024 + 16 * 1024
INSERT_BATCH_DOCUMENTS = 1000
INSERT_BATCH_BYTES = 8 * 1024 * 1024
# Long collection names would exceed the 255 bytes a file name may have.
MAX_FILE_STEM = 200

CHUNK_SIZE = 1024 * 1024
# Objects above the part size go up as multipart uploads, several parts at once.
PART_SIZE = 16 * 1024 * 1024
MANIFEST = "manifest.jsonl"
DATA_DIR = "data"
# Standard headers that a client sets on PUT and S3 returns on GET.
# TODO: restore Expires too once the minio SDK can send it; today it turns
# every header outside this list into x-amz-meta-*, so it is left out.
STORED_HEADERS = (
    "Content-Encoding",
    "Cache-Control",
    "Content-Disposition",
    "Content-Language",
)
USER_METADATA_PREFIX = "x-amz-meta-"
# Seconds between progress reports: callers write them to a Job row.
PROGRESS_INTERVAL = 0.5


class DumpError(RuntimeError):
    """The dump directory is missing, incomplete or corrupt."""


class EngineRefused(RuntimeError):
    """The engine answered a restore step with an error for one object."""


class _Meter:
    """Running byte total, reported to the callback at most twice a second."""

    def __init__(self, callback: Progress):
        self.callback = callback
        self.interval = PROGRESS_INTERVAL
        self.done = 0
        self.reported_at = time.monotonic()

    def add(self, count: int) -> None:
        self.done += count
        if self.callback and time.monotonic() - self.reported_at >= self.interval:
            self.report()

    def report(self) -> None:
        self.reported_at = time.monotonic()
        if self.callback:
            self.callback(self.done)


def _empty_dir(path: Path) -> Path:
    # A dump never mixes with leftovers: a stale file would restore a
    # collection or object that no longer exists.
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise DumpError(f"dump directory {path} is not empty")
    return path


# Databases -------------------------------------------------------------------


def collection_file_stem(name: str) -> str:
    """A file name for a collection: '/' and other unsafe bytes %-escaped.

    Restore reads the name from the metadata file, so the escaping only has to
    be safe and unique, not reversible; it still is for names of usual length.
    """
    stem = quote(name, safe=" !#&'()+,-.;=@[]^_`{}~")
    if len(stem.encode()) > MAX_FILE_STEM:
        digest = hashlib.sha1(name.encode()).hexdigest()
        stem = f"{stem[: MAX_FILE_STEM - 44]}%24{digest}"
    return stem


def _dumpable_collections(database: Database) -> list[dict]:
    # system.* holds engine state (profile, views, buckets of time series);
    # the engine rebuilds it from the collections and views themselves.
    listed = database.list_collections()
    return [info for info in listed if not info["name"].startswith("system.")]


def _index_specs(collection) -> list[SON]:
    # "ns" is legacy and createIndexes rejects it once the database is renamed.
    specs = []
    for spec in collection.list_indexes():
        spec.pop("ns", None)
        specs.append(spec)
    return specs


def _write_metadata(path: Path, info: dict, indexes: list) -> None:
    uuid = info.get("info", {}).get("uuid")
    metadata = SON(
        [
            ("options", info.get("options", {})),
            ("indexes", indexes),
            ("uuid", uuid.hex() if uuid is not None else ""),
            ("collectionName", info["name"]),
            ("type", info.get("type", "collection")),
        ]
    )
    path.write_text(json_util.dumps(metadata, json_options=METADATA_JSON))


def _dump_documents(collection, path: Path, meter: _Meter) -> tuple[int, int]:
    """Stream a collection's raw documents into a .bson file, in natural order."""
    count = size = 0
    raw = collection.with_options(codec_options=RAW)
    with open(path, "wb") as handle:
        for document in raw.find(batch_size=INSERT_BATCH_DOCUMENTS):
            data = document.raw
            handle.write(data)
            count += 1
            size += len(data)
            meter.add(len(data))
    return count, size


def dump_database(
    client: MongoClient, db_name: str, dest_dir: Path, progress: Progress = None
) -> dict:
    """Dump every collection and view of a database into an empty directory."""
    dest_dir = _empty_dir(dest_dir)
    database = client[db_name]
    meter = _Meter(progress)
    stats = {"collections": 0, "views": 0, "indexes": 0, "documents": 0, "bytes": 0}

    for info in _dumpable_collections(database):
        name = info["name"]
        stem = dest_dir / collection_file_stem(name)
        if info.get("type") == "view":
            _write_metadata(stem.with_name(stem.name + ".metadata.json"), info, [])
            stats["views"] += 1
            continue

        collection = database[name]
        indexes = _index_specs(collection)
        _write_metadata(stem.with_name(stem.name + ".metadata.json"), info, indexes)
        count, size = _dump_documents(
            collection, stem.with_name(stem.name + ".bson"), meter
        )
        stats["collections"] += 1
        stats["indexes"] += sum(1 for spec in indexes if spec["name"] != "_id_")
        stats["documents"] += count
        stats["bytes"] += size

    meter.report()
    logger.info("dumped database %s: %s", db_name, stats)
    return stats


def _read_dump(src_dir: Path) -> list[dict]:
    """Every collection of a dump: name, type, options, indexes, .bson path.

    A .bson file without metadata (a partial mongodump) restores with default
    options and only the _id index.
    """
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise DumpError(f"dump directory {src_dir} does not exist")

    entries = {}
    for path in sorted(src_dir.glob("*.metadata.json")):
        stem = path.name[: -len(".metadata.json")]
        try:
            metadata = json_util.loads(path.read_text(), json_options=METADATA_JSON)
        except ValueError as exc:
            raise DumpError(f"{path.name}: {exc}") from None
        entries[stem] = {
            "name": metadata.get("collectionName") or unquote(stem),
            "type": metadata.get("type") or "collection",
            "options": metadata.get("options") or {},
            "indexes": metadata.get("indexes") or [],
        }
    for path in sorted(src_dir.glob("*.bson")):
        entry = entries.setdefault(
            path.stem,
            {"name": unquote(path.stem), "type": "collection", "options": {}},
        )
        entry.setdefault("indexes", [])
        _check_bson_file(path)
        entry["bson"] = path
    return list(entries.values())


def _check_bson_file(path: Path) -> None:
    """Walk a .bson file's length prefixes without reading the documents.

    Restore calls this for every file before it changes anything, so that a
    truncated dump fails the restore while the database is still intact.
    """
    end = path.stat().st_size
    with open(path, "rb") as handle:
        offset = 0
        while offset < end:
            handle.seek(offset)
            size = int.from_bytes(handle.read(4), "little")
            if not 5 <= size <= MAX_DOCUMENT_SIZE or offset + size > end:
                raise DumpError(f"{path.name}: corrupt at byte {offset}")
            handle.seek(offset + size - 1)
            if handle.read(1) != b"\x00":
                raise DumpError(f"{path.name}: corrupt at byte {offset}")
            offset += size


def _bson_documents(path: Path) -> Iterator[bytes]:
    """The raw documents of a .bson file, one at a time."""
    with open(path, "rb") as handle:
        while head := handle.read(4):
            size = int.from_bytes(head, "little")
            if len(head) < 4 or not 5 <= size <= MAX_DOCUMENT_SIZE:
                raise DumpError(f"{path.name}: bad document length {size}")
            body = handle.read(size - 4)
            if len(body) != size - 4 or body[-1:] != b"\x00":
                raise DumpError(f"{path.name}: truncated document")
            yield head + body


def _batches(path: Path) -> Iterator[list[RawBSONDocument]]:
    batch, batch_bytes = [], 0
    for data in _bson_documents(path):
        batch.append(RawBSONDocument(data, RAW))
        batch_bytes += len(data)
        if len(batch) >= INSERT_BATCH_DOCUMENTS or batch_bytes >= INSERT_BATCH_BYTES:
            yield batch
            batch, batch_bytes = [], 0
    if batch:
        yield batch


def _is_secantus(client: MongoClient) -> bool:
    """Whether the engine is SecantusDB, whose costs differ from mongod's.

    Measured on SecantusDB: dropping a collection of 20,000 documents takes
    about 30 s, deleting them all and then dropping the empty collection 3 s;
    building an index over 60,000 documents takes 26 s after the load, and
    adds 3 s to the load when it exists before. On mongod a drop is cheap, a
    delete of every document is not, and indexes build fastest after the load.
    """
    return "secantusVersion" in client.admin.command("buildInfo")


def _drop(database: Database, info: dict, empty_first: bool) -> None:
    if empty_first and info.get("type", "collection") == "collection":
        database[info["name"]].delete_many({})
    database.drop_collection(info["name"])


def _create(database: Database, entry: dict) -> None:
    # The options go to the create command as they came from listCollections,
    # as mongorestore does: capped, size, max, validator, collation, viewOn...
    command = SON([("create", entry["name"])])
    command.update(entry["options"])
    database.command(command)


def _load_documents(database: Database, entry: dict, meter: _Meter) -> int:
    collection = database.get_collection(entry["name"], codec_options=RAW)
    # Documents may predate their validator. Bypassing needs a privilege that
    # readWrite lacks, so ask for it only where a validator is set.
    bypass = bool(entry["options"].get("validator"))
    count = 0
    for batch in _batches(entry["bson"]):
        collection.insert_many(batch, ordered=True, bypass_document_validation=bypass)
        count += len(batch)
        meter.add(sum(len(document.raw) for document in batch))
    return count


def _create_indexes(database: Database, entry: dict) -> int:
    # _id_ comes with the collection; the rest keep their names and options
    # (unique, sparse, expireAfterSeconds, partialFilterExpression, ...).
    specs = [spec for spec in entry["indexes"] if spec.get("name") != "_id_"]
    for spec in specs:
        spec.pop("ns", None)
    if specs:
        database.command("createIndexes", entry["name"], indexes=specs)
    return len(specs)


def _restore_collection(database, entry, indexes_first, meter) -> tuple[int, int]:
    """Create one collection, load its documents, build its indexes."""
    _create(database, entry)
    indexes = _create_indexes(database, entry) if indexes_first else 0
    documents = _load_documents(database, entry, meter) if "bson" in entry else 0
    if not indexes_first:
        indexes = _create_indexes(database, entry)
    return documents, indexes


def restore_database(
    client: MongoClient, db_name: str, src_dir: Path, progress: Progress = None
) -> dict:
    """Replace a database's collections and views with those of a dump.

    Steps:
    1. Read the dump's metadata and check its .bson files (nothing is touched
       if the dump is unreadable or truncated).
    2. Drop the collections and views that are not in the dump.
    3. For each collection in the dump: drop it, create it with its options,
       build its indexes and insert its documents in batches (indexes after
       the load on mongod, before it on SecantusDB: see _is_secantus).
    4. Create the views last: a view may read collections restored in step 3.

    The database itself is never dropped, so its users and their roles stay
    and the tenant's credentials keep working. Each step starts from whatever
    the database holds, so a restore that failed half-way is retried by running
    it again.
    """
    entries = _read_dump(src_dir)
    database = client[db_name]
    meter = _Meter(progress)
    stats = {"collections": 0, "views": 0, "indexes": 0, "documents": 0, "dropped": 0}

    secantus = _is_secantus(client)
    existing = {info["name"]: info for info in _dumpable_collections(database)}
    wanted = {entry["name"] for entry in entries}
    for name, info in existing.items():
        if name not in wanted:
            _drop(database, info, secantus)
            stats["dropped"] += 1

    collections = [entry for entry in entries if entry["type"] != "view"]
    for entry in collections:
        if entry["name"] in existing:
            _drop(database, existing[entry["name"]], secantus)
        documents, indexes = _restore_collection(database, entry, secantus, meter)
        stats["collections"] += 1
        stats["documents"] += documents
        stats["indexes"] += indexes

    for entry in entries:
        if entry["type"] == "view":
            if entry["name"] in existing:
                _drop(database, existing[entry["name"]], secantus)
            _create(database, entry)
            stats["views"] += 1

    meter.report()
    stats["bytes"] = meter.done
    logger.info("restored database %s: %s", db_name, stats)
    return stats


# Buckets ---------------------------------------------------------------------


def object_data_path(key: str) -> str:
    """Where an object's bytes live in a dump, relative to the dump directory.

    A hash of the key, fanned out over 256 directories: safe for any key, and
    keys like 'a' and 'a/b' (a file and a directory) never collide.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{DATA_DIR}/{digest[:2]}/{digest}"


def _object_entry(key: str, headers) -> dict:
    """The manifest fields that come from a GET's response headers."""
    stored = {name: headers[name] for name in STORED_HEADERS if name in headers}
    metadata = {
        name.lower()[len(USER_METADATA_PREFIX) :]: value
        for name, value in headers.items()
        if name.lower().startswith(USER_METADATA_PREFIX)
    }
    return {
        "key": key,
        "path": object_data_path(key),
        "etag": headers.get("ETag", "").strip('"'),
        "lastModified": headers.get("Last-Modified"),
        "contentType": headers.get("Content-Type"),
        "headers": stored,
        "metadata": metadata,
    }


def _download(response, path: Path, meter: _Meter) -> tuple[int, str]:
    """Stream a GET's body to a file; return its size and md5."""
    path.parent.mkdir(parents=True, exist_ok=True)
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "wb") as handle:
        # The stored bytes as they are: a Content-Encoding such as gzip
        # describes the object for its readers, it is not for us to undo.
        for chunk in response.stream(CHUNK_SIZE, decode_content=False):
            handle.write(chunk)
            md5.update(chunk)
            size += len(chunk)
            meter.add(len(chunk))
    return size, md5.hexdigest()


def _dump_object(s3: Minio, bucket: str, key: str, dest_dir: Path, meter) -> dict:
    # One GET gives the bytes and the headers of the same version of the object.
    response = s3.get_object(bucket, key)
    try:
        entry = _object_entry(key, response.headers)
        expected = int(response.headers.get("Content-Length", -1))
        size, md5 = _download(response, dest_dir / entry["path"], meter)
    finally:
        response.close()
        response.release_conn()
    if expected >= 0 and size != expected:
        raise DumpError(f"object {key!r}: got {size} of {expected} bytes")
    return {**entry, "size": size, "md5": md5}


def dump_bucket(
    s3: Minio, bucket: str, dest_dir: Path, progress: Progress = None
) -> dict:
    """Dump every object of a bucket, with its headers and metadata.

    The manifest is written under a temporary name and renamed last: a dump
    that failed half-way has no manifest.jsonl, and restore refuses it.
    """
    dest_dir = _empty_dir(dest_dir)
    meter = _Meter(progress)
    stats = {"objects": 0, "bytes": 0, "vanished": 0}
    partial = dest_dir / (MANIFEST + ".partial")

    with open(partial, "w", encoding="utf-8") as manifest:
        for listed in s3.list_objects(bucket, recursive=True):
            try:
                entry = _dump_object(s3, bucket, listed.object_name, dest_dir, meter)
            except S3Error as exc:
                # Deleted between the listing and the GET: not part of the dump.
                if exc.code != "NoSuchKey":
                    raise
                stats["vanished"] += 1
                continue
            manifest.write(json.dumps(entry, ensure_ascii=False) + "\n")
            stats["objects"] += 1
            stats["bytes"] += entry["size"]
    partial.rename(dest_dir / MANIFEST)

    meter.report()
    logger.info("dumped bucket %s: %s", bucket, stats)
    return stats


def _manifest_entry(line: str, number: int) -> dict:
    try:
        entry = json.loads(line)
        valid = isinstance(entry["key"], str) and entry["size"] >= 0
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise DumpError(f"{MANIFEST}: line {number} is not an object entry")
    return entry


def _manifest_entries(src_dir: Path) -> Iterator[dict]:
    with open(Path(src_dir) / MANIFEST, encoding="utf-8") as manifest:
        for number, line in enumerate(manifest, start=1):
            if line.strip():
                yield _manifest_entry(line, number)


def _check_bucket_dump(src_dir: Path) -> set[str]:
    """The dump's keys, once every data file is known to be there and whole."""
    src_dir = Path(src_dir)
    if not (src_dir / MANIFEST).is_file():
        raise DumpError(f"{src_dir} holds no complete bucket dump")
    keys = set()
    for entry in _manifest_entries(src_dir):
        # Recompute the path: a manifest must not name a file outside the dump.
        path = src_dir / object_data_path(entry["key"])
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DumpError(f"object {entry['key']!r}: data file missing") from None
        if size != entry["size"]:
            raise DumpError(f"object {entry['key']!r}: data file has wrong size")
        keys.add(entry["key"])
    return keys


def _listing(s3: Minio, bucket: str) -> dict[str, tuple[int, str]]:
    """{key: (size, etag)} of every object in the bucket."""
    return {
        item.object_name: (item.size, (item.etag or "").strip('"'))
        for item in s3.list_objects(bucket, recursive=True)
    }


def _delete_others(s3: Minio, bucket: str, current: dict, keep: set[str]) -> int:
    doomed = [key for key in current if key not in keep]
    # remove_objects is lazy: the deletes happen while its errors are read.
    errors = s3.remove_objects(bucket, (DeleteObject(key) for key in doomed))
    for error in errors:
        raise EngineRefused(f"cannot delete object {error.name!r}: {error.code}")
    return len(doomed)


def _unchanged(s3: Minio, bucket: str, entry: dict, current: dict) -> bool:
    """Whether the bucket already holds this object, bytes and headers alike.

    A retried restore, or one after a small change, then uploads only what
    differs. Equal size and ETag stand for equal bytes (a multipart ETag is
    compared with the one from the dump); one HEAD compares the headers.
    """
    size, etag = current.get(entry["key"], (None, ""))
    if size != entry["size"] or not etag:
        return False
    if etag not in (entry.get("md5"), entry.get("etag")):
        return False
    now = _object_entry(entry["key"], s3.stat_object(bucket, entry["key"]).metadata)
    fields = ("contentType", "headers", "metadata")
    return all(now[field] == entry.get(field) for field in fields)


class _MeteredReader:
    """A file the SDK reads for an upload, counting and hashing what it reads."""

    def __init__(self, handle, meter: _Meter):
        self.handle = handle
        self.meter = meter
        self.md5 = hashlib.md5(usedforsecurity=False)

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.md5.update(data)
        self.meter.add(len(data))
        return data


def _upload_object(s3: Minio, bucket: str, entry: dict, src_dir, meter) -> None:
    metadata = dict(entry.get("headers") or {})
    for name, value in (entry.get("metadata") or {}).items():
        metadata[USER_METADATA_PREFIX + name] = value

    with open(Path(src_dir) / object_data_path(entry["key"]), "rb") as handle:
        reader = _MeteredReader(handle, meter)
        s3.put_object(
            bucket,
            entry["key"],
            reader,
            length=entry["size"],
            content_type=entry.get("contentType") or "application/octet-stream",
            metadata=metadata,
            part_size=PART_SIZE,
        )
    # The archive checks its own integrity; this catches a dump directory
    # changed on disk after the fact.
    if entry.get("md5") and reader.md5.hexdigest() != entry["md5"]:
        raise DumpError(f"object {entry['key']!r}: data does not match the dump")


def restore_bucket(
    s3: Minio, bucket: str, src_dir: Path, progress: Progress = None
) -> dict:
    """Replace a bucket's objects with those of a dump.

    Steps:
    1. Check the dump: a manifest, and every data file present with its size
       (nothing is touched if the dump is incomplete).
    2. Delete the objects that are not in the dump. This comes first because
       the embedded engine stores objects as files: 'a' cannot be uploaded
       while 'a/b' still exists.
    3. Upload every object with its content type, headers and user metadata,
       large ones as multipart uploads; skip those already there unchanged.

    The bucket itself, its policy and its keys are left alone. Each step is
    idempotent, so a restore that failed half-way is retried by running it again.
    """
    keep = _check_bucket_dump(src_dir)
    meter = _Meter(progress)
    stats = {"objects": 0, "bytes": 0, "uploaded": 0, "unchanged": 0}

    current = _listing(s3, bucket)
    stats["deleted"] = _delete_others(s3, bucket, current, keep)

    for entry in _manifest_entries(src_dir):
        if _unchanged(s3, bucket, entry, current):
            meter.add(entry["size"])
            stats["unchanged"] += 1
        else:
            _upload_object(s3, bucket, entry, src_dir, meter)
            stats["uploaded"] += 1
        stats["objects"] += 1
        stats["bytes"] += entry["size"]

    meter.report()
    logger.info("restored bucket %s: %s", bucket, stats)
    return stats
