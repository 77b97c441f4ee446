"""zooserve on Ray Serve: the same HTTP API over many GPUs (docs/many_gpus.md).

`serve run zooserve.ray:app` builds the application from $ZOOSERVE_CONFIG on first access
(importing this package needs neither Ray nor a config); `zooserve.ray:build` takes
`serve run` arguments; `run_cluster` is `zooserve serve --ray`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "build", "build_app", "run_cluster"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from zooserve.ray.cluster import app_from_env

        return app_from_env()
    if name in ("build", "build_app", "run_cluster"):
        from zooserve.ray import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module 'zooserve.ray' has no attribute {name!r}")
