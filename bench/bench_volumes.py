"""Volume plugin latency on a real stack of its own, over its unix socket.

Creates 1,000 volumes, times a Mount+Unmount pair on them (one after the
other, then with parallel callers as dockerd issues them), times List with
all of them present, times GET /volumes on the control API, and removes them.
Figures only: nothing is asserted.

    .venv/bin/python -m bench.bench_volumes [--volumes 1000] [--pairs 500]
"""

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from tests.plugin_client import PluginClient
from tests.stackrunner import Stack


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def timed(call) -> float:
    started = time.perf_counter()
    answer = call()
    elapsed = (time.perf_counter() - started) * 1000
    if isinstance(answer, dict) and answer.get("Err"):
        raise SystemExit(f"plugin refused: {answer['Err']}")
    if getattr(answer, "status_code", 200) >= 300:
        raise SystemExit(f"{answer.status_code}: {answer.text}")
    return elapsed


def report(phase: str, values: list[float]) -> None:
    print(
        f"{phase:<28} n={len(values):<5} p50={percentile(values, 0.5):7.1f} ms  "
        f"p99={percentile(values, 0.99):7.1f} ms  "
        f"mean={statistics.fmean(values):7.1f} ms  max={max(values):7.1f} ms"
    )


def mount_unmount(plugin: PluginClient, name: str, mount_id: str) -> float:
    def pair():
        mounted = plugin.mount(name, mount_id)
        if mounted["Err"]:
            return mounted
        return plugin.unmount(name, mount_id)

    return timed(pair)


def run(node: Stack, count: int, pairs: int) -> None:
    plugin = PluginClient(node.plugin_socket)
    names = [f"bench-{n:04d}" for n in range(count)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(lambda n: timed(lambda: plugin.create(n)), names))
    report("Create (8 parallel)", created)

    picks = [names[(n * 7919) % count] for n in range(pairs)]
    serial = [mount_unmount(plugin, name, f"s{n}") for n, name in enumerate(picks)]
    report("Mount+Unmount", serial)

    with ThreadPoolExecutor(max_workers=16) as pool:
        parallel = list(
            pool.map(
                lambda item: mount_unmount(plugin, item[1], f"p{item[0]}"),
                enumerate(picks),
            )
        )
    report("Mount+Unmount (16 parallel)", parallel)

    listed = [timed(plugin.list) for _ in range(20)]
    volumes = len(plugin.list()["Volumes"])
    report(f"List ({volumes} volumes)", listed)
    api = [timed(lambda: node.get("/volumes")) for _ in range(5)]
    report(f"GET /volumes ({volumes})", api)

    with ThreadPoolExecutor(max_workers=8) as pool:
        removed = list(pool.map(lambda n: timed(lambda: plugin.remove(n)), names))
    report("Remove (8 parallel)", removed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=500)
    args = parser.parse_args()

    node = Stack()
    try:
        started = time.perf_counter()
        node.start()
        print(f"stack started in {time.perf_counter() - started:.1f} s")
        print(f"corestore volume plugin, {args.volumes} volumes")
        run(node, args.volumes, args.pairs)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        node.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
