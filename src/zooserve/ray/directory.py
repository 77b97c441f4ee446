"""The directory: one small detached Ray actor where each replica reports its views.

Ray Serve routes a call to one replica and offers no broadcast, so the ingress cannot ask
every replica; instead each replica reports (replica.py, twice a second) and the ingress
reads the reports that are fresh. A replica that died stops reporting and drops out after
`STALE_S`. Detached, so it outlives whichever replica created it; one per Serve app.
"""

from __future__ import annotations

import time
from typing import Any

import ray

#: A report older than this is a replica that is gone (or stuck).
STALE_S = 3.0


@ray.remote(num_cpus=0)
class Directory:
    def __init__(self) -> None:
        self.reports: dict[str, dict[str, Any]] = {}

    def report(self, replica: str, view: dict[str, Any]) -> None:
        self.reports[replica] = {**view, "replica": replica, "reported_at": time.time()}

    def forget(self, replica: str) -> None:
        self.reports.pop(replica, None)

    def fresh(self) -> list[dict[str, Any]]:
        now = time.time()
        for replica, view in list(self.reports.items()):
            if now - view["reported_at"] > STALE_S * 10:
                del self.reports[replica]
        live = [v for v in self.reports.values() if now - v["reported_at"] <= STALE_S]
        return sorted(live, key=lambda v: str(v["replica"]))


def directory(app_name: str) -> Any:
    """The app's directory actor, created on first use."""
    return Directory.options(  # type: ignore[attr-defined]
        name=f"zooserve-directory-{app_name}",
        namespace="zooserve",
        lifetime="detached",
        get_if_exists=True,
    ).remote()
