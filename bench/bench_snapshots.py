"""Snapshot and restore throughput on a real stack of its own.

Generates one mixed tree in a volume (text, logs, small and large binaries,
hardlinks and symlinks; ~1 GB, or CORESTORE_BENCH_MB megabytes), then measures
in one run:

- `tar | zstd -3` and `cp -a` of the tree, for reference;
- the first volume snapshot, an incremental one after a 1 % change (time and
  bytes added to the archive), and restores into an emptied volume and over a
  1 % change, next to `zstd -d | tar -x` and `cp -a` back;
- database and bucket snapshot throughput (a tenth and a fifth of the tree's
  size in documents and objects).

Caches are warm for every tool alike. Figures only: nothing is asserted.

    .venv/bin/python -m bench.bench_snapshots
    CORESTORE_BENCH_MB=200 .venv/bin/python -m bench.bench_snapshots
"""

import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.plugin_client import PluginClient
from tests.stackrunner import Stack
from tests.tenants import tenant_mongo, tenant_s3

MB = 1024 * 1024
WORDS = (
    "volume snapshot restore archive service bucket object database index "
    "container deploy node worker job restic stream chunk"
).split()


def target_bytes() -> int:
    return int(os.environ.get("CORESTORE_BENCH_MB", "1024")) * MB


# The tree ----------------------------------------------------------------------


def text_blob(rng: random.Random, size: int) -> bytes:
    line = " ".join(rng.choice(WORDS) for _ in range(12)) + "\n"
    parts, total = [], 0
    while total < size:
        chunk = f"{rng.randrange(10**9)} {line}"
        parts.append(chunk)
        total += len(chunk)
    return "".join(parts).encode()[:size]


def generate_tree(root: Path, total: int, seed: int = 7) -> int:
    """A mixed tree of about `total` bytes; the bytes actually written.

    By bytes: 40 % large random files (media, already compressed), 25 %
    medium random files, 20 % text in small files, 15 % logs.
    """
    rng = random.Random(seed)
    written = 0

    def put(path: Path, data: bytes):
        nonlocal written
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written += len(data)

    budget = total * 40 // 100
    for index in range(max(1, budget // (64 * MB))):
        put(root / "media" / f"video-{index:03d}.mp4", os.urandom(64 * MB))
    budget = total * 25 // 100
    for index in range(max(1, budget // MB)):
        put(root / "blobs" / f"{index % 16:02x}" / f"blob-{index}.bin", os.urandom(MB))
    budget, index = total * 20 // 100, 0
    while budget > 0:
        size = rng.randrange(2_000, 64_000)
        put(
            root / "src" / f"pkg{index % 50}" / f"file{index}.txt", text_blob(rng, size)
        )
        budget -= size
        index += 1
    budget, index = total * 15 // 100, 0
    while budget > 0:
        size = min(budget, 16 * MB)
        put(root / "logs" / f"app-{index}.log", text_blob(rng, size))
        budget -= size
        index += 1

    os.link(root / "logs" / "app-0.log", root / "logs" / "current.log")
    os.symlink("logs/current.log", root / "latest.log")
    (root / "empty-dir").mkdir()
    return written


def change_one_percent(root: Path, total: int, seed: int = 11) -> int:
    """Rewrite files worth about 1 % of the tree; the bytes rewritten."""
    rng = random.Random(seed)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    rng.shuffle(files)
    changed = 0
    for path in files:
        if changed >= total // 100:
            break
        size = path.stat().st_size
        if size > total // 50:
            continue
        with open(path, "r+b") as handle:
            handle.seek(rng.randrange(max(1, size)))
            handle.write(os.urandom(min(size, 4096)) or b"x")
        changed += size
    return changed


def clear(root: Path) -> None:
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True)
    return int(out.stdout.split()[0])


# Measuring ---------------------------------------------------------------------


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def shell(command: str) -> None:
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)


def api(node: Stack, path: str, body: dict) -> dict:
    response = node.post(path, json=body, timeout=3600)
    if response.status_code != 200:
        raise SystemExit(f"{path}: {response.status_code} {response.text}")
    return response.json()


class Report:
    def __init__(self, reference_rate: float | None = None):
        self.reference = reference_rate
        self.rows = []

    def add(self, what: str, size: int, seconds: float, note: str = ""):
        rate = size / MB / seconds if seconds else 0.0
        self.rows.append((what, size, seconds, rate, note))
        if self.reference is None:
            self.reference = rate
        ratio = rate / self.reference if self.reference else 0
        print(
            f"{what:<44} {size / MB:9.1f} MB {seconds:8.2f} s {rate:8.1f} MB/s"
            f"  {ratio:5.2f}x  {note}",
            flush=True,
        )


def bench_volume(node: Stack, scratch: Path, report: Report) -> None:
    name = "bench-volume"
    PluginClient(node.plugin_socket).create(name)
    root = node.data_dir / "volumes" / name / "data"
    total = generate_tree(root, target_bytes())
    print(f"tree: {total / MB:.0f} MB in {sum(1 for _ in root.rglob('*'))} entries")
    print(f"{'':<44} {'size':>12} {'time':>10} {'rate':>13}  vs tar|zstd")

    archive_file = scratch / "tree.tar.zst"
    seconds, _ = timed(
        lambda: shell(f"tar -C {root} -cf - . | zstd -3 -q -o {archive_file}")
    )
    report.add("tar | zstd -3", total, seconds, f"-> {du(archive_file) / MB:.0f} MB")
    seconds, _ = timed(lambda: shell(f"cp -a {root} {scratch / 'copy'}"))
    report.add("cp -a", total, seconds)

    archive = node.data_dir / "archive"
    before = du(archive)
    seconds, first = timed(
        lambda: api(node, "/volumes/snapshot", {"name": name, "snapshotName": "one"})
    )
    report.add(
        "volume snapshot (first)",
        total,
        seconds,
        f"stored {first['storedSize'] / MB:.0f} MB, archive +"
        f"{(du(archive) - before) / MB:.0f} MB",
    )

    changed = change_one_percent(root, total)
    before = du(archive)
    seconds, second = timed(
        lambda: api(node, "/volumes/snapshot", {"name": name, "snapshotName": "two"})
    )
    report.add(
        "volume snapshot (incremental, 1 % changed)",
        total,
        seconds,
        f"{changed / MB:.1f} MB rewritten, "
        f"archive +{(du(archive) - before) / MB:.1f} MB",
    )

    clear(root)
    seconds, _ = timed(
        lambda: api(
            node, "/volumes/restore", {"name": name, "snapshotId": first["snapshotId"]}
        )
    )
    report.add("volume restore (into an emptied volume)", total, seconds)
    seconds, _ = timed(
        lambda: api(
            node, "/volumes/restore", {"name": name, "snapshotId": second["snapshotId"]}
        )
    )
    report.add("volume restore (over a 1 % change)", total, seconds)

    extract = scratch / "extract"
    extract.mkdir()
    seconds, _ = timed(
        lambda: shell(f"zstd -d -q -c {archive_file} | tar -C {extract} -xf -")
    )
    report.add("zstd -d | tar -x", total, seconds)
    shutil.rmtree(extract)
    clear(root)
    seconds, _ = timed(lambda: shell(f"cp -a {scratch / 'copy'}/. {root}/"))
    report.add("cp -a back", total, seconds)
    shutil.rmtree(scratch / "copy")
    archive_file.unlink()


def provision(node: Stack, service_id: str, capability: str) -> dict:
    body = {
        "serviceId": service_id,
        "serviceName": "bench",
        "capabilities": [capability],
    }
    response = node.post("/resources/provision", json=body)
    if response.status_code not in (200, 201):
        raise SystemExit(f"provision: {response.status_code} {response.text}")
    return response.json()["env"]


def bench_database(node: Stack, report: Report) -> None:
    env = provision(node, "bench-db", "database")
    client = tenant_mongo(env)
    collection = client[env["MONGODB_DATABASE"]]["events"]
    rng = random.Random(3)
    size, batch, target = 0, [], target_bytes() // 10
    started = time.perf_counter()
    while size < target:
        document = {
            "n": len(batch),
            "user": f"user-{rng.randrange(10_000)}",
            "tags": rng.sample(WORDS, 3),
            "payload": text_blob(rng, 900).decode(),
        }
        batch.append(document)
        size += 1000
        if len(batch) == 1000:
            collection.insert_many(batch)
            batch = []
    if batch:
        collection.insert_many(batch)
    collection.create_index("user")
    print(
        f"database filled: {size / MB:.0f} MB in {time.perf_counter() - started:.1f} s"
    )
    client.close()

    seconds, body = timed(
        lambda: api(node, "/resources/snapshot", {"serviceId": "bench-db"})
    )
    [snapshot] = body["snapshots"]
    report.add("database snapshot", snapshot["originalSize"], seconds)
    seconds, _ = timed(
        lambda: api(
            node,
            "/resources/restore",
            {"serviceId": "bench-db", "snapshots": body["snapshots"]},
        )
    )
    report.add("database restore", snapshot["originalSize"], seconds)


def bench_bucket(node: Stack, report: Report) -> None:
    env = provision(node, "bench-s3", "objectstorage")
    s3, bucket = tenant_s3(env), env["S3_BUCKET"]
    target, size, index = target_bytes() // 5, 0, 0
    started = time.perf_counter()
    while size < target:
        length = MB if index % 4 else 64 * 1024
        s3.upload_fileobj(
            io.BytesIO(os.urandom(length)),
            bucket,
            f"objects/{index % 32}/{index}.bin",
            ExtraArgs={"ContentType": "application/octet-stream"},
        )
        size += length
        index += 1
    print(f"bucket filled: {size / MB:.0f} MB in {time.perf_counter() - started:.1f} s")

    seconds, body = timed(
        lambda: api(node, "/resources/snapshot", {"serviceId": "bench-s3"})
    )
    [snapshot] = body["snapshots"]
    report.add("bucket snapshot", snapshot["originalSize"], seconds)
    seconds, _ = timed(
        lambda: api(
            node,
            "/resources/restore",
            {"serviceId": "bench-s3", "snapshots": body["snapshots"]},
        )
    )
    report.add("bucket restore", snapshot["originalSize"], seconds)


def main() -> None:
    for tool in ("zstd", "tar", "restic", "rsync"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    node = Stack()
    scratch = Path(tempfile.mkdtemp(prefix="bench-snap-"))
    try:
        node.start()
        print(f"corestore snapshots, restic {restic_version()}, {os.cpu_count()} cores")
        report = Report()
        bench_volume(node, scratch, report)
        bench_database(node, report)
        bench_bucket(node, report)
    except BaseException:
        print(node.output_tail(), file=sys.stderr)
        raise
    finally:
        node.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)


def restic_version() -> str:
    out = subprocess.run(["restic", "version"], capture_output=True, text=True)
    return out.stdout.split()[1] if out.stdout else "?"


if __name__ == "__main__":
    main()
