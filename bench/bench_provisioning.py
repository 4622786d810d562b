"""Latency of provisioning on a real stack of its own.

Provisions 50 services with both capabilities one after the other, then calls
provision again for each (the idempotent path), then deprovisions them, and
prints p50 and p95 of each phase. Figures only: nothing is asserted.

    .venv/bin/python -m bench.bench_provisioning [--services 50]
"""

import argparse
import statistics
import sys
import time

from tests.stackrunner import Stack


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def timed(call) -> float:
    started = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - started
    if response.status_code >= 300:
        raise SystemExit(f"{response.status_code}: {response.text}")
    return elapsed * 1000


def report(phase: str, values: list[float]) -> None:
    print(
        f"{phase:<16} n={len(values):<4} p50={percentile(values, 0.5):7.1f} ms  "
        f"p95={percentile(values, 0.95):7.1f} ms  "
        f"mean={statistics.fmean(values):7.1f} ms  max={max(values):7.1f} ms"
    )


def run(node: Stack, count: int) -> None:
    ids = [f"bench-{n:03d}" for n in range(count)]

    def provision(service_id):
        body = {
            "serviceId": service_id,
            "serviceName": f"bench-app-{service_id}",
            "capabilities": ["database", "objectstorage"],
        }
        return lambda: node.post("/resources/provision", json=body)

    def deprovision(service_id):
        body = {"serviceId": service_id}
        return lambda: node.post("/resources/deprovision", json=body)

    first = [timed(provision(service_id)) for service_id in ids]
    again = [timed(provision(service_id)) for service_id in ids]
    removed = [timed(deprovision(service_id)) for service_id in ids]

    print(f"corestore provisioning, {count} services, both capabilities")
    report("provision", first)
    report("re-provision", again)
    report("deprovision", removed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50)
    args = parser.parse_args()

    node = Stack()
    try:
        started = time.perf_counter()
        node.start()
        print(f"stack started in {time.perf_counter() - started:.1f} s")
        health = node.get("/health").json()["engines"]
        print(
            f"engines: database={health['database']['engine']} "
            f"objectstorage={health['objectstorage']['engine']}"
        )
        run(node, args.services)
    except BaseException:
        print(node.output_tail(), file=sys.stderr)
        raise
    finally:
        node.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
