"""PUT and GET throughput through the S3 gateway next to rclone direct.

Starts its own rclone (`serve s3` on a loopback port and a unix socket) and
its own gateway in front of that socket, runs the same boto3 workload against
both, prints the figures and the gateway/direct ratios, and stops both.

    .venv/bin/python -m bench.bench_s3_gateway [--size-mb 200] [--small 1000]
"""

import argparse
import http.client
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = ROOT / "corestore_project" / "engines" / "s3_gateway.py"
ACCESS_KEY, SECRET_KEY = "BENCHACCESSKEY", "bench-secret-key-0123456789"
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


class Servers:
    """rclone with --auth-key (the same engine flags as the stack) + gateway."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.direct_port, self.gateway_port = free_port(), free_port()
        self.socket = workdir / "rclone.sock"
        self.processes = []

    def start(self):
        (self.workdir / "buckets" / "bench").mkdir(parents=True)
        rclone = str(Path(sys.executable).with_name("rclone"))
        self._spawn(
            [
                rclone,
                "serve",
                "s3",
                "--addr",
                f"127.0.0.1:{self.direct_port}",
                "--addr",
                f"unix://{self.socket}",
                "--auth-key",
                f"{ACCESS_KEY},{SECRET_KEY}",
                "--vfs-cache-mode",
                "off",
                "--dir-cache-time",
                "1s",
                "--force-path-style",
                "--config",
                "/dev/null",
                "--log-level",
                "ERROR",
                str(self.workdir / "buckets"),
            ]
        )
        wait_port(self.direct_port)
        self._spawn(
            [
                sys.executable,
                str(GATEWAY),
                "--listen",
                f"127.0.0.1:{self.gateway_port}",
                "--upstream",
                str(self.socket),
                "--metadata",
                str(self.workdir / "metadata.sqlite3"),
            ]
        )
        wait_port(self.gateway_port)

    def _spawn(self, command):
        log = open(self.workdir / f"{len(self.processes)}.log", "wb")
        self.processes.append(
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        )
        log.close()

    def stop(self):
        for process in reversed(self.processes):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def client(port: int):
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        # s3v4: boto3 presigns with SigV2 by default, which rclone refuses.
        config=Config(max_pool_connections=4, signature_version="s3v4"),
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def large(s3, path: Path, key: str) -> tuple[float, float]:
    size = path.stat().st_size

    def put():
        with path.open("rb") as handle:
            s3.put_object(Bucket="bench", Key=key, Body=handle)

    def get():
        body = s3.get_object(Bucket="bench", Key=key)["Body"]
        while body.read(MB):
            pass

    return size / MB / timed(put), size / MB / timed(get)


def raw_get(s3, port: int, key: str, size: int) -> float:
    """GET of a presigned URL with http.client: the client's own cost (boto3
    checks a CRC of the body) stays out of the figure."""
    url = s3.generate_presigned_url("get_object", {"Bucket": "bench", "Key": key})
    path = url.split(str(port), 1)[1]

    def get():
        connection = http.client.HTTPConnection("127.0.0.1", port)
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200, response.status
        while response.read(MB):
            pass
        connection.close()

    return size / MB / timed(get)


def small(s3, count: int, prefix: str) -> tuple[float, float]:
    payload = os.urandom(4096)

    def put():
        for number in range(count):
            s3.put_object(
                Bucket="bench", Key=f"{prefix}/{number}", Body=io.BytesIO(payload)
            )

    def get():
        for number in range(count):
            s3.get_object(Bucket="bench", Key=f"{prefix}/{number}")["Body"].read()

    return count / timed(put), count / timed(get)


def best(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return max(r[0] for r in runs), max(r[1] for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-s3gw-"))
    servers = Servers(workdir)
    try:
        servers.start()
        source = workdir / "source.bin"
        with source.open("wb") as handle:
            for _ in range(args.size_mb):
                handle.write(os.urandom(MB))
        direct, gateway = client(servers.direct_port), client(servers.gateway_port)

        # Alternate the two targets so that neither profits from a warmer
        # page cache or a quieter machine; keep the best of each.
        large_runs = {"direct": [], "gateway": []}
        raw_runs = {"direct": [], "gateway": []}
        small_runs = {"direct": [], "gateway": []}
        ports = {"direct": servers.direct_port, "gateway": servers.gateway_port}
        rclone_pid, gateway_pid = (p.pid for p in servers.processes)
        gateway_cpu = {"rclone": 0.0, "gateway": 0.0}
        for round_number in range(args.rounds):
            for name, s3 in (("direct", direct), ("gateway", gateway)):
                before = cpu_seconds(rclone_pid), cpu_seconds(gateway_pid)
                large_runs[name].append(large(s3, source, f"{name}-large"))
                raw_runs[name].append(
                    raw_get(s3, ports[name], f"{name}-large", source.stat().st_size)
                )
                if name == "gateway":
                    gateway_cpu["rclone"] += cpu_seconds(rclone_pid) - before[0]
                    gateway_cpu["gateway"] += cpu_seconds(gateway_pid) - before[1]
                small_runs[name].append(
                    small(s3, args.small, f"{name}-small-{round_number}")
                )
        report(args, best(large_runs["direct"]), best(large_runs["gateway"]), "MB/s")
        direct_raw, gateway_raw = max(raw_runs["direct"]), max(raw_runs["gateway"])
        print(
            f"{args.size_mb:>9} MB object GET (http.client): rclone direct "
            f"{direct_raw:8.1f} MB/s  gateway {gateway_raw:8.1f} MB/s  "
            f"ratio {gateway_raw / direct_raw:.2f}"
        )
        # Throughput depends on what else the machine runs; CPU time does not.
        gigabytes = 3 * args.rounds * args.size_mb / 1024
        print(
            f"CPU seconds per GB moved through the gateway (PUT + 2 GETs): "
            f"rclone {gateway_cpu['rclone'] / gigabytes:.2f}  "
            f"gateway {gateway_cpu['gateway'] / gigabytes:.2f}"
        )
        report(args, best(small_runs["direct"]), best(small_runs["gateway"]), "obj/s")
    finally:
        servers.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(args, direct, gateway, unit):
    what = (
        f"{args.size_mb} MB object"
        if unit == "MB/s"
        else f"{args.small} x 4 KB objects"
    )
    for label, index in (("PUT", 0), ("GET", 1)):
        print(
            f"{what:>22} {label}: rclone direct {direct[index]:8.1f} {unit}  "
            f"gateway {gateway[index]:8.1f} {unit}  "
            f"ratio {gateway[index] / direct[index]:.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
