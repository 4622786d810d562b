"""Durable object metadata for the embedded object engine.

rclone's `serve s3` keeps Content-Type and x-amz-meta-* in memory only, and
separately for each access key. The S3 gateway (s3_gateway.py) therefore
records them here, in one SQLite file beside rclone's buckets directory, and
serves them on GET and HEAD to every key alike.

Standard library only: both the gateway and the Django process use it.
"""

import json
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    meta TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    meta TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_bucket ON uploads (bucket);
"""


class MetadataStore:
    """Metadata rows keyed by (bucket, key), and those of multipart uploads.

    Each object row carries the ETag that rclone answered for the write that
    stored it, so a reader can tell when the data has changed without the
    metadata (for example when the gateway died between rclone's answer and
    its own write) and ignore the stale row.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        # WAL with synchronous=NORMAL survives a crash of any process; like
        # rclone's own file writes it is not fsynced against power loss.
        self.db = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def get(self, bucket: str, key: str) -> tuple[str, dict] | None:
        row = self.db.execute(
            "SELECT etag, meta FROM objects WHERE bucket = ? AND key = ?",
            (bucket, key),
        ).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def put(self, bucket: str, key: str, etag: str, meta: dict) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO objects (bucket, key, etag, meta) "
            "VALUES (?, ?, ?, ?)",
            (bucket, key, etag, json.dumps(meta, sort_keys=True)),
        )

    def delete(self, bucket: str, keys: list[str]) -> None:
        self.db.executemany(
            "DELETE FROM objects WHERE bucket = ? AND key = ?",
            [(bucket, key) for key in keys],
        )

    def start_upload(self, upload_id: str, bucket: str, key: str, meta: dict):
        self.db.execute(
            "INSERT OR REPLACE INTO uploads (upload_id, bucket, key, meta, created) "
            "VALUES (?, ?, ?, ?, ?)",
            (upload_id, bucket, key, json.dumps(meta, sort_keys=True), time.time()),
        )

    def upload_meta(self, upload_id: str) -> dict | None:
        row = self.db.execute(
            "SELECT meta FROM uploads WHERE upload_id = ?", (upload_id,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def complete_upload(self, upload_id: str, bucket: str, key: str, etag: str):
        meta = self.upload_meta(upload_id) or {}
        with self.db:
            self.db.execute("BEGIN")
            self.put(bucket, key, etag, meta)
            self.db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))

    def end_upload(self, upload_id: str) -> None:
        self.db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))

    def drop_bucket(self, bucket: str) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM objects WHERE bucket = ?", (bucket,))
            self.db.execute("DELETE FROM uploads WHERE bucket = ?", (bucket,))

    def forget_old_uploads(self, max_age_seconds: float) -> None:
        """rclone aborts idle uploads itself; their pending rows go too."""
        self.db.execute(
            "DELETE FROM uploads WHERE created < ?", (time.time() - max_age_seconds,)
        )
