"""An HTTP load generator for the benchmarks: N concurrent clients (httpx.AsyncClient, keep-alive) send one
request after another until a request count or a time budget is spent; latency percentiles and requests/s."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank p-th percentile (0 < p <= 100): the smallest value with at least p % of values at or below
    it. With 100 samples p99 is the 99th smallest; with fewer, it is the largest."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < p <= 100:
        raise ValueError("p must be in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[rank - 1]


@dataclass
class LoadResult:
    concurrency: int
    requests: int  # answered with an expected status
    errors: int  # any other status, or a transport error
    seconds: float  # wall time of the measured run
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    first_error: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "latencies_ms"}
        out["rps"] = round(self.rps, 1)
        if self.latencies_ms:
            out.update(
                p50_ms=round(percentile(self.latencies_ms, 50), 2),
                p99_ms=round(percentile(self.latencies_ms, 99), 2),
                max_ms=round(max(self.latencies_ms), 2),
            )
        out["seconds"] = round(self.seconds, 2)
        return out


async def load_run(
    client: httpx.AsyncClient,
    url_for: Callable[[int], str],
    *,
    concurrency: int,
    requests: int,
    max_seconds: float,
    headers: dict[str, str] | None = None,
    ok_statuses: frozenset[int] = frozenset({200, 204}),
    warmup: int = 2,
) -> LoadResult:
    """Run `concurrency` clients over `url_for(0..requests-1)` (each index once) until all are sent or
    `max_seconds` have passed. Each client first sends `warmup` unmeasured requests."""
    counter = iter(range(requests))
    latencies: list[float] = []
    result = LoadResult(concurrency=concurrency, requests=0, errors=0, seconds=0.0, latencies_ms=latencies)

    async def one(url: str) -> tuple[bool, str]:
        try:
            response = await client.get(url, headers=headers)
            await response.aread()
        except httpx.HTTPError as e:
            return False, f"{type(e).__name__}: {e}"
        if response.status_code in ok_statuses:
            return True, ""
        return False, f"HTTP {response.status_code}: {response.text[:200]}"

    async def worker(deadline: float) -> None:
        for index in counter:
            if time.perf_counter() > deadline:
                return
            start = time.perf_counter()
            ok, error = await one(url_for(index))
            elapsed = (time.perf_counter() - start) * 1000
            if ok:
                latencies.append(elapsed)
                result.requests += 1
            else:
                result.errors += 1
                result.first_error = result.first_error or error

    # Warm-up (connections opened, caches filled) before the clock starts.
    await asyncio.gather(*(one(url_for(n)) for n in range(concurrency) for _ in range(warmup)))
    start = time.perf_counter()
    await asyncio.gather(*(worker(start + max_seconds) for _ in range(concurrency)))
    result.seconds = time.perf_counter() - start
    return result
