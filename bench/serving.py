"""The same detector, the same frames: zooserve over HTTP vs LitServe (with and without its
batching) vs a bare FastAPI endpoint, compared fairly (FACTS.md, "what makes a comparison fair").

The servers (bench/serving_peers.py) all start at once and stay up; then, in each of `rounds`
rounds and at each concurrency, every server gets one short burst (`requests` requests from
`concurrency` closed-loop clients), in an order rotated by one place per round, so that no
server always runs first or right after the same neighbour, and a change of load on a shared
machine lands on all of them. Per server and concurrency: the median and range over rounds of
frames/s and of each burst's p50 (and p99) latency. Per peer: zooserve's frames/s ÷ the peer's,
paired within each round (adjacent bursts), median and range; the best peer at a concurrency is
the one with the highest median frames/s, so LitServe counts at its better setting there.
"batching" is zooserve ÷ zooserve-unbatched (`max_batch_size` 1), paired the same way.

Every request is the same JSON body naming scikit-image's astronaut (512x512 PNG) in a media
folder; every server reads and decodes it per request, and answers boxes as JSON. YOLO11n runs
at `imgsz` 320 so that a 2-core CPU serves a few thousand requests in a few minutes.

LitServe is a benchmark peer only, not a zooserve dependency; install it into the venv first:

    .venv/bin/pip install litserve
    .venv/bin/python bench/serving.py                          # 5 rounds at 1, 8, 32 clients
    .venv/bin/python bench/serving.py --concurrency 1 8 --rounds 5 --json out/serving.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.serving_peers import (
    ARCHITECTURE,
    IMAGE,
    IMGSZ,
    KINDS,
    LITSERVE_HINT,
    PEERS,
    ROUTES,
    SETTINGS,
    build_detector,
    ls,
    server,
    write_media,
)

CONCURRENCY = (1, 8, 32)
ROUNDS = 5
REQUESTS = 64
THRESHOLD = 0.3
#: Each burst's figures that the report gives as median and range over rounds.
FIGURES = ("frames_per_s", "p50_ms", "p99_ms")

#: per kind, per concurrency (as a string): one run per round, in round order.
Runs = dict[str, dict[str, list[dict[str, Any]]]]


# --- the load -----------------------------------------------------------------------------------


async def closed_loop(url: str, route: str, requests: int, concurrency: int) -> dict[str, Any]:
    """`requests` detects from `concurrency` clients, each sending its next when answered."""
    # No prompts: YOLO is closed-vocabulary (zooserve would route prompts to an open-vocabulary
    # detector); "model" names zooserve's entry, the peers serve only this one.
    body = {"video_path": IMAGE, "model": "detector", "confidence_threshold": THRESHOLD}
    remaining = requests
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                statuses[str((await client.post(route, json=body)).status_code)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {
        "requests": requests,
        "statuses": dict(sorted(statuses.items())),
        "seconds": round(seconds, 2),
        "frames_per_s": round(requests / seconds, 2),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1),
    }


def rotated(kinds: Sequence[str], round_index: int) -> list[str]:
    """`kinds` starting `round_index` places further on: who goes first changes every round."""
    shift = round_index % len(kinds)
    return [*kinds[shift:], *kinds[:shift]]


def alternate(
    urls: dict[str, str], requests: int, concurrencies: Sequence[int], rounds: int
) -> tuple[Runs, list[list[str]]]:
    """Warm every server up at every concurrency (unmeasured), then `rounds` rounds of one burst
    per server and concurrency; the runs and each round's order."""
    for kind, url in urls.items():
        asyncio.run(closed_loop(url, ROUTES[kind], 2, 1))  # the first request loads the model
        for concurrency in concurrencies:
            asyncio.run(closed_loop(url, ROUTES[kind], min(concurrency, 8), concurrency))
    runs: Runs = {kind: {str(c): [] for c in concurrencies} for kind in urls}
    orders = []
    for round_index in range(rounds):
        order = rotated(list(urls), round_index)
        orders.append(order)
        for concurrency in concurrencies:
            for kind in order:
                run = asyncio.run(closed_loop(urls[kind], ROUTES[kind], requests, concurrency))
                runs[kind][str(concurrency)].append(run)
    return runs, orders


def bench(
    base: Path,
    servers: Sequence[str] = KINDS,
    requests: int = REQUESTS,
    concurrencies: Sequence[int] = CONCURRENCY,
    rounds: int = ROUNDS,
    imgsz: int = IMGSZ,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Every server in `servers` (of KINDS) up at once, `rounds` alternating rounds at every
    concurrency. `checkpoint` defaults to a fresh YOLO11n build."""
    if any(kind.startswith("litserve") for kind in servers) and ls is None:
        raise SystemExit(LITSERVE_HINT)
    checkpoint = checkpoint or build_detector(base / "yolo11n.pt")
    media = write_media(base / "media")
    with contextlib.ExitStack() as stack:
        urls = {
            kind: stack.enter_context(server(kind, base, checkpoint, media, imgsz))
            for kind in servers
        }
        runs, orders = alternate(urls, requests, concurrencies, rounds)
    return {
        "model": f"{ARCHITECTURE} (random weights) at imgsz {imgsz}",
        "weights_mb": round(checkpoint.stat().st_size / 2**20, 1),
        "image": f"{IMAGE} 512x512",
        "requests_per_burst": requests,
        "rounds": rounds,
        "settings": {kind: SETTINGS[kind] for kind in servers},
        "orders": orders,
        "servers": {kind: summarize(by_concurrency) for kind, by_concurrency in runs.items()},
        **comparisons(runs),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# --- the report ---------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median and range of per-round figures."""
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def summarize(by_concurrency: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per concurrency: every status summed over rounds, and each figure's median and range."""
    out = {}
    for concurrency, runs in by_concurrency.items():
        statuses: Counter[str] = Counter()
        for run in runs:
            statuses.update(run["statuses"])
        out[concurrency] = {
            "statuses": dict(sorted(statuses.items())),
            **{key: spread([run[key] for run in runs]) for key in FIGURES},
            "runs": runs,
        }
    return out


def paired(runs: Runs, mine: str, theirs: str, concurrency: str) -> dict[str, float]:
    """`mine`'s frames/s ÷ `theirs`' within each round (bursts run back to back), spread."""
    pairs = zip(runs[mine][concurrency], runs[theirs][concurrency], strict=True)
    return spread([a["frames_per_s"] / b["frames_per_s"] for a, b in pairs])


def comparisons(runs: Runs) -> dict[str, Any]:
    """`ratios` (zooserve ÷ each peer), `best_peer` (by median frames/s) and `batching`
    (zooserve ÷ zooserve-unbatched), per concurrency; empty where zooserve did not run."""
    out: dict[str, Any] = {"ratios": {}, "best_peer": {}, "batching": {}}
    if "zooserve" not in runs:
        return out
    peers = [kind for kind in PEERS if kind in runs]
    for concurrency in runs["zooserve"]:
        for kind in peers:
            out["ratios"][f"zooserve/{kind}@{concurrency}"] = paired(
                runs, "zooserve", kind, concurrency
            )
        if peers:
            medians = {kind: median_throughput(runs, kind, concurrency) for kind in peers}
            best = max(medians, key=medians.__getitem__)
            ratio = out["ratios"][f"zooserve/{best}@{concurrency}"]
            out["best_peer"][concurrency] = {"peer": best, **ratio}
        if "zooserve-unbatched" in runs:
            out["batching"][concurrency] = paired(
                runs, "zooserve", "zooserve-unbatched", concurrency
            )
    return out


def median_throughput(runs: Runs, kind: str, concurrency: str) -> float:
    return statistics.median(run["frames_per_s"] for run in runs[kind][concurrency])


def cell(figure: dict[str, float]) -> str:
    return f"{figure['median']} ({figure['min']}-{figure['max']})"


def table(report: dict[str, Any]) -> str:
    """The report as markdown: per concurrency and server, then zooserve ÷ the best peer."""
    lines = [
        "| clients | server | setting | frames/s | p50 ms | p99 ms | statuses | zooserve ÷ this |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    concurrencies = next(iter(report["servers"].values())).keys()
    for concurrency in concurrencies:
        for kind, summaries in report["servers"].items():
            run = summaries[concurrency]
            ratio = report["ratios"].get(f"zooserve/{kind}@{concurrency}")
            statuses = ", ".join(f"{k}: {v}" for k, v in run["statuses"].items())
            lines.append(
                f"| {concurrency} | {kind} | {report['settings'][kind]} | "
                f"{cell(run['frames_per_s'])} | {cell(run['p50_ms'])} | {cell(run['p99_ms'])} | "
                f"{statuses} | {cell(ratio) if ratio else ''} |"
            )
    if report["best_peer"]:
        lines += ["", "| clients | best peer | zooserve ÷ best peer |", "| --- | --- | --- |"]
        for concurrency, best in report["best_peer"].items():
            lines.append(f"| {concurrency} | {best['peer']} | **{cell(best)}** |")
    if report["batching"]:
        ratios = (f"{c} clients: {cell(r)}" for c, r in report["batching"].items())
        lines += ["", f"batching (zooserve ÷ zooserve-unbatched): {'; '.join(ratios)}"]
    lines += [
        "",
        f"medians (min-max) over {report['rounds']} rounds of {report['requests_per_burst']}"
        " requests per server; ratios paired within each round",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=REQUESTS, help="requests per burst")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--servers", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--imgsz", type=int, default=IMGSZ)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zooserve-serving-") as tmp:
        report = bench(
            Path(tmp), args.servers, args.requests, args.concurrency, args.rounds, args.imgsz
        )
    print(table(report))
    print(f"\nload average (1, 5, 15 min) at the end: {report['load_average']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
