"""The embedded object engine: rclone's `serve s3` over local directories.

rclone learns every access key from an auth proxy program
(rclone_auth_proxy.py), which reads the key map that this adapter keeps in
<data>/s3/keys.json. The map holds no secrets: the proxy derives them from the
master secret. Each tenant key gets a `combine` backend that holds only its own
bucket; the admin key gets the whole buckets directory.

rclone listens on a unix socket in <data>/run only. The S3 port belongs to
the S3 gateway (s3_gateway.py), which passes requests through unchanged,
refuses those rclone would mishandle, and keeps object metadata durably in
<data>/s3/metadata.sqlite3.
"""

import fcntl
import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from .base import (
    EngineUnavailable,
    ObjectEngine,
    ProcessSpec,
    connect_host,
    ensure_dir,
    port_open,
    venv_bin,
)
from .s3_metadata import MetadataStore

PROXY_SCRIPT = Path(__file__).with_name("rclone_auth_proxy.py")
GATEWAY_SCRIPT = Path(__file__).with_name("s3_gateway.py")
# rclone caches each answer of the auth proxy for 5 minutes; twice that is safe.
TOMBSTONE_SECONDS = 600


class RcloneEngine(ObjectEngine):
    kind = "rclone"
    embedded = True
    limits = [
        "not supported, answered 501 NotImplemented: versioning, object lock "
        "(retention, legal hold), tagging, ACLs other than private, bucket "
        "policies, CORS, lifecycle, website, replication, logging, "
        "notifications, server-side encryption, UploadPartCopy (boto3's "
        "managed copy() of objects over 8 MB fails; copy_object works), "
        "conditional writes (If-Match/If-None-Match on PUT), copy-source "
        "conditions, GetObjectAttributes, GET by partNumber, multiple byte "
        "ranges, listing delimiters other than '/', browser POST uploads",
        "keys are file paths: 'foo/bar' and 'foo/bar/x' cannot both exist, "
        "and keys with '.' or '..' segments, '//', or a leading or trailing "
        "'/' are refused with 400",
        "only Signature Version 4 is accepted, also for presigned URLs (boto3 "
        "presigns with SigV2 unless signature_version='s3v4' is set)",
        "x-amz-checksum-* values sent with an upload are stored, not verified "
        "(Content-MD5 and signed payload hashes are verified)",
        "multipart parts are streamed in part-number order; parts sent out of "
        "order are buffered in memory (at most 256 MB per upload, 1 GB per key)",
        "ListMultipartUploads on a bucket without uploads answers 404 "
        "NoSuchUpload instead of an empty list",
        "an object written with one key may take up to 1 s to appear to "
        "another key (rclone's directory cache)",
        "a removed access key keeps working for up to about 5 minutes "
        "(rclone caches the auth proxy's answer)",
        "buckets are created and deleted by provisioning only: a tenant key "
        "is refused CreateBucket and DeleteBucket with 403 AccessDenied",
    ]

    @property
    def root(self) -> Path:
        return settings.DATA_DIR / "s3"

    @property
    def buckets_dir(self) -> Path:
        return self.root / "buckets"

    @property
    def key_map_path(self) -> Path:
        return self.root / "keys.json"

    def prepare(self) -> None:
        ensure_dir(self.root)
        ensure_dir(self.buckets_dir)
        if not self.key_map_path.exists():
            self._write_key_map({})
        # rclone is not running yet, so no cached key can write any more.
        self._sweep(older_than=0)
        shutil.rmtree(self.root / "trash", ignore_errors=True)
        self._drop_interrupted_uploads()

    def _drop_interrupted_uploads(self) -> None:
        """Removes what uploads cut off by a stop or crash of rclone left behind.

        rclone writes a PUT, and each multipart part, to a temporary file in the
        bucket folder and renames it when done; killed, it leaves the file for
        ever. It keeps multipart uploads in memory only, so after its restart no
        pending upload can be completed and their metadata rows go too.
        """
        for pattern in (".rclone_temp_put_*", ".rclone_temp_multipart_*"):
            for leftover in self.buckets_dir.rglob(pattern):
                if leftover.is_file() and not leftover.is_symlink():
                    leftover.unlink(missing_ok=True)
        if self.metadata_path.exists():
            store = MetadataStore(self.metadata_path)
            try:
                store.db.execute("DELETE FROM uploads")
            finally:
                store.close()

    @property
    def socket_path(self) -> Path:
        return settings.RUN_DIR / "rclone-s3.sock"

    @property
    def metadata_path(self) -> Path:
        return self.root / "metadata.sqlite3"

    def processes(self) -> list[ProcessSpec]:
        rclone = [
            venv_bin("rclone"),
            "serve",
            "s3",
            # A socket in <data>/run (0700): workloads reach only the gateway.
            "--addr",
            f"unix://{self.socket_path}",
            "--auth-proxy",
            f"{sys.executable} -I -S {PROXY_SCRIPT}",
            # off: `writes` acknowledges a PUT before it is on disk.
            "--vfs-cache-mode",
            "off",
            # A failed PUT otherwise leaves a stale listing for 5 minutes.
            "--dir-cache-time",
            "1s",
            "--force-path-style",
            "--config",
            "/dev/null",
            "--log-level",
            "NOTICE",
        ]
        # rclone cannot listen while the socket of a killed predecessor exists.
        start_rclone = (
            f"rm -f {shlex.quote(str(self.socket_path))}; exec {shlex.join(rclone)}"
        )
        gateway = [
            sys.executable,
            str(GATEWAY_SCRIPT),
            "--listen",
            f"{settings.BIND_ADDRESS}:{settings.S3_PORT}",
            "--upstream",
            str(self.socket_path),
            "--metadata",
            str(self.metadata_path),
            "--log-format",
            settings.LOG_FORMAT,
        ]
        environment = {
            "CORESTORE_S3_ROOT": str(self.root),
            "CORESTORE_DATA_DIR": str(settings.DATA_DIR),
        }
        return [
            ProcessSpec(
                name="objectstorage",
                command=["/bin/sh", "-c", start_rclone],
                environment=environment,
                priority=20,
            ),
            # Starts after rclone and stops before it.
            ProcessSpec(name="s3gateway", command=gateway, priority=25),
        ]

    def ready(self) -> bool:
        return port_open(connect_host(), settings.S3_PORT) and self._rclone_answers()

    def _rclone_answers(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            try:
                sock.connect(str(self.socket_path))
            except OSError:
                return False
            return True

    @contextmanager
    def _locked_key_map(self):
        ensure_dir(self.root)
        with open(self.root / "keys.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self._read_key_map()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_key_map(self) -> dict:
        try:
            return json.loads(self.key_map_path.read_text())
        except FileNotFoundError:
            return {}

    def _write_key_map(self, keys: dict) -> None:
        # Write-then-rename: the proxy may read the map at any moment.
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".keys-")
        with os.fdopen(fd, "w") as handle:
            json.dump(keys, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.key_map_path)

    def ensure_tenant(self, bucket: str, access_key: str, service_id: str) -> None:
        if not self.ready():
            raise EngineUnavailable("object engine is not answering")
        with self._locked_key_map() as keys:
            self._sweep()
            path = self.buckets_dir / bucket
            if path.is_file():
                path.unlink()  # the tombstone of an earlier deprovision
            ensure_dir(path, 0o755)
            entry = {"bucket": bucket, "serviceId": service_id}
            if keys.get(access_key) != entry:
                keys[access_key] = entry
                self._write_key_map(keys)

    def drop_tenant(self, bucket: str, access_key: str, service_id: str) -> None:
        """Remove the key and the bucket with all its objects.

        Steps: drop the key from the map, so the proxy refuses it from now on;
        move the bucket directory aside and put a tombstone file in its place;
        delete the moved directory. rclone keeps serving a key it has seen for
        up to 5 minutes after the map lost it, and its local backend re-creates
        missing directories on PUT: without the tombstone such a key would
        bring the bucket back. A file at the bucket's path makes those writes
        fail; tombstones are swept once rclone's cache has surely expired.
        """
        with self._locked_key_map() as keys:
            if keys.pop(access_key, None) is not None:
                self._write_key_map(keys)
            moved = self._bury(self.buckets_dir / bucket)
            self._sweep()
        # Outside the lock: deleting a large bucket must not hold up other
        # tenants' provisioning.
        for path in moved:
            shutil.rmtree(path, ignore_errors=True)
        self.drop_metadata(bucket)

    def drop_metadata(self, bucket: str) -> None:
        """Forget the object metadata the S3 gateway kept for the bucket."""
        store = MetadataStore(self.metadata_path)
        try:
            store.drop_bucket(bucket)
        finally:
            store.close()

    def _bury(self, path: Path) -> list[Path]:
        """Replace a bucket directory by a tombstone; answer where it went."""
        trash = ensure_dir(self.root / "trash")
        moved = []
        for _ in range(10):
            if path.is_dir():
                moved.append(Path(tempfile.mkdtemp(dir=trash, prefix=path.name + "-")))
                path.rename(moved[-1] / "bucket")
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                if path.is_file():
                    break
                # A writer with a cached key re-created the directory between
                # the rename and the tombstone: move it aside too.
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write("deprovisioned; a new provision call replaces this\n")
            break
        return moved

    def _sweep(self, older_than: float = TOMBSTONE_SECONDS) -> None:
        """Remove tombstones older than rclone's cache of proxy answers."""
        deadline = time.time() - older_than
        with os.scandir(self.buckets_dir) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    if entry.stat().st_mtime < deadline:
                        os.unlink(entry.path)

    def bucket_exists(self, bucket: str) -> bool:
        return (self.buckets_dir / bucket).is_dir()
