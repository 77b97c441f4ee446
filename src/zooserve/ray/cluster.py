"""The Ray Serve application: an ingress (ingress.py) bound to the model-holding replicas
(replica.py), and `run_cluster` behind `zooserve serve --ray`.

Placement: each replica is one ModelManager on one device, so a replica asks Ray for one GPU
(`num_gpus=1`) when the config's device is CUDA: Ray sets CUDA_VISIBLE_DEVICES, and `cuda`
(or `auto`) in the config is that GPU. A fixed `replicas` count, or `min_replicas` /
`max_replicas` to let Ray Serve autoscale on queue depth (`target_ongoing_requests` per
replica). The ingress runs on the head node, next to the job store (see docs/many_gpus.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.serve import Application

from zooserve.catalog import DEFAULT_CONFIG_PATH, load_config
from zooserve.ray.directory import directory
from zooserve.ray.ingress import Forwarder, build_ingress_app
from zooserve.ray.replica import ZooReplica

APP_NAME = "zooserve"
#: Ongoing requests per replica the autoscaler aims for (queue depth).
TARGET_ONGOING_REQUESTS = 2
#: A replica's concurrent requests; more wait in Ray's queue (the manager queues its own too).
MAX_ONGOING_REQUESTS = 8


@serve.deployment(name="ZooIngress")
@serve.ingress()
class ZooIngress:
    def __init__(self, replicas: Any, config_path: str, api_key: str | None) -> None:
        self.config = load_config(config_path)
        self.api_key = api_key
        self.forwarder = Forwarder(replicas)
        self.directory = directory(serve.get_replica_context().app_name)

    def __serve_build_asgi_app__(self) -> Any:
        return build_ingress_app(self.config, self.api_key, self.forwarder, self.directory)


def default_gpus(device: str) -> float:
    if device.startswith("cuda"):
        return 1.0
    if device == "auto":
        import torch

        return 1.0 if torch.cuda.is_available() else 0.0
    return 0.0


def build_app(
    config_path: str | Path | None,
    replicas: int | None = None,
    *,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    num_gpus: float | None = None,
    num_cpus: float = 1.0,
    api_key: str | None = None,
    debug_routes: bool = False,
) -> Application:
    """The application for `serve.run`. `replicas` fixes the count; else `min_replicas` /
    `max_replicas` autoscale (defaults 1 / 1). `api_key` defaults to $ZOOSERVE_API_KEY.
    `config_path` None: $ZOOSERVE_CONFIG, else config/models.yaml (as `load_config`); every
    node must find the config and the model files at the same absolute paths."""
    chosen = config_path or os.environ.get("ZOOSERVE_CONFIG") or DEFAULT_CONFIG_PATH
    path = str(Path(chosen).resolve())
    config = load_config(path)  # a broken config fails here, not in every replica
    key = api_key if api_key is not None else os.environ.get("ZOOSERVE_API_KEY") or None
    gpus = default_gpus(config.device) if num_gpus is None else num_gpus
    scaling: dict[str, Any]
    if replicas is not None:
        scaling = {"num_replicas": replicas}
    else:
        low = min_replicas or 1
        scaling = {
            "autoscaling_config": {
                "min_replicas": low,
                "max_replicas": max(low, max_replicas or low),
                "target_ongoing_requests": TARGET_ONGOING_REQUESTS,
            }
        }
    model_holders = ZooReplica.options(  # type: ignore[attr-defined]
        ray_actor_options={"num_gpus": gpus, "num_cpus": num_cpus},
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
        **scaling,
    ).bind(path, key, debug_routes)
    return ZooIngress.options(  # type: ignore[attr-defined]
        ray_actor_options={"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}},
    ).bind(model_holders, path, key)


def build(args: dict[str, str]) -> Application:
    """`serve run zooserve.ray:build config=models.yaml replicas=2` (or min_replicas=,
    max_replicas=, num_gpus=)."""

    def number(name: str) -> int | None:
        return int(args[name]) if name in args else None

    return build_app(
        args.get("config"),
        number("replicas"),
        min_replicas=number("min_replicas"),
        max_replicas=number("max_replicas"),
        num_gpus=float(args["num_gpus"]) if "num_gpus" in args else None,
    )


def app_from_env() -> Application:
    """`zooserve.ray:app`: the config at $ZOOSERVE_CONFIG, $ZOOSERVE_RAY_REPLICAS replicas
    (else autoscaling between $ZOOSERVE_RAY_MIN_REPLICAS and $ZOOSERVE_RAY_MAX_REPLICAS)."""
    env = {
        name: os.environ[f"ZOOSERVE_RAY_{name.upper()}"]
        for name in ("replicas", "min_replicas", "max_replicas", "num_gpus")
        if os.environ.get(f"ZOOSERVE_RAY_{name.upper()}")
    }
    return build(env)


def run_cluster(
    config_path: str | Path | None, replicas: int, host: str = "127.0.0.1", port: int = 8000
) -> None:
    """`zooserve serve --ray --replicas N`: join the Ray cluster this machine belongs to (or
    start a local one), serve on host:port, block until interrupted."""
    try:
        ray.init(address="auto")
    except ConnectionError:
        ray.init()
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(config_path, replicas), name=APP_NAME, route_prefix="/", blocking=True)
