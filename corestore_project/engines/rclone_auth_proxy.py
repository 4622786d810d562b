"""rclone's auth proxy for the embedded object engine.

rclone runs this once for each access key it has not seen in the last five
minutes (and for every request signed with an unknown key), so it must start
fast: it runs with `python -I -S` and imports only the standard library and
derive.py. It reads {"user": "<access key id>"} on stdin and answers the backend
config, with the secret that rclone checks the request's signature against.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from corestore_project import derive  # noqa: E402


def backend_for(access_key: str, s3_root: Path, master_secret: str) -> dict | None:
    buckets = s3_root / "buckets"

    admin_key, admin_secret = derive.s3_admin_credentials(master_secret)
    if access_key == admin_key:
        return {
            "type": "local",
            "_root": str(buckets),
            "_secret_access_key": admin_secret,
        }

    keys = json.loads((s3_root / "keys.json").read_text())
    entry = keys.get(access_key)
    if entry is None:
        return None
    _, secret = derive.s3_tenant_credentials(master_secret, entry["serviceId"])
    bucket = entry["bucket"]
    # combine shows exactly one top-level directory: the tenant's own bucket.
    # rclone splits upstreams on spaces unless the entry is quoted CSV-style.
    upstream = f"{bucket}={buckets / bucket}".replace('"', '""')
    return {
        "type": "combine",
        "upstreams": f'"{upstream}"',
        "_root": "",
        "_secret_access_key": secret,
    }


def main() -> int:
    request = json.load(sys.stdin)
    data_dir = Path(os.environ["CORESTORE_DATA_DIR"])
    s3_root = Path(os.environ.get("CORESTORE_S3_ROOT", data_dir / "s3"))
    master_secret = derive.read_master_secret(
        data_dir, os.environ.get("CORESTORE_MASTER_SECRET")
    )

    backend = backend_for(str(request.get("user", "")), s3_root, master_secret)
    if backend is None:
        print("unknown access key", file=sys.stderr)
        return 1
    json.dump(backend, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
