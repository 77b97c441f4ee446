"""`zooserve serve|demo|bench`: run the service, show it working, measure it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zooserve.cli import common
from zooserve.cli.common import ConfigOption, load_config_or_exit, quiet_logging


def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    log_level: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
    ray_cluster: Annotated[
        bool, typer.Option("--ray", help="serve on a Ray cluster (pip install 'zooserve[ray]')")
    ] = False,
    replicas: Annotated[
        int, typer.Option(min=1, help="with --ray: model-holding replicas, one device each")
    ] = 1,
) -> None:
    """Start the HTTP service (uvicorn), or with --ray the same API on a Ray Serve cluster."""
    import uvicorn

    from zooserve.api.app import create_app
    from zooserve.core.logs import configure_logging

    cfg = load_config_or_exit(config)
    configure_logging(log_level, as_json=cfg.log_json)
    if ray_cluster:
        from zooserve.ray import run_cluster

        run_cluster(config, replicas, host, port)
        return
    # zooserve logs each request itself (with its request id); uvicorn's access log would repeat it.
    uvicorn.run(
        create_app(cfg),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,  # open event streams (dashboards) must not hold shutdown
    )


def demo(
    config: ConfigOption = None,
    port: Annotated[int, typer.Option(help="TCP port of the demo server")] = 8000,
    out: Annotated[Path, typer.Option(help="where annotated frames are written")] = Path(
        "out/demo"
    ),
    once: Annotated[bool, typer.Option("--once", help="exit after showing the result")] = False,
) -> None:
    """Start the service, detect on sample media over HTTP, and write annotated frames."""
    from zooserve.cli.demo import run_demo

    quiet_logging()
    cfg = load_config_or_exit(config)
    run_demo(cfg, port=port, out=out, keep_serving=not once, console=common.console)


def bench(
    config: ConfigOption = None,
    models: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="model(s) to measure")
    ] = None,
    frames: Annotated[
        int | None, typer.Option(min=1, help="frames per model (default 8; with --track 48)")
    ] = None,
    out: Annotated[Path, typer.Option(help="directory for the reports")] = Path("out/bench"),
    zoo: Annotated[
        bool, typer.Option("--zoo", help="every enabled zoo model; model-major vs naive order")
    ] = False,
    track: Annotated[
        bool, typer.Option("--track", help="tracked frames/s and session memory per tracker")
    ] = False,
) -> None:
    """Per model: memory, load and inference time, unload recovery; then HTTP/in-process.

    Exit code 1 when no model could be measured (each one's reason is printed)."""
    from zooserve_bench.report import nothing_measured

    quiet_logging()
    cfg = load_config_or_exit(config)
    if zoo:
        from zooserve_bench.zoo import run_zoo_bench

        report = run_zoo_bench(cfg, out=out, console=common.console)
        rows = report["models"] + [
            {"model": name, "error": "not on this machine"} for name in report["unavailable"]
        ]
    elif track:
        from zooserve_bench.track import run_track_bench

        report = run_track_bench(
            cfg, out=out, console=common.console, models=models, frames=frames or 48
        )
        rows = report["trackers"]
    else:
        from zooserve_bench.models import run_bench

        report = run_bench(cfg, models or [], frames=frames or 8, out=out, console=common.console)
        rows = report["models"]
    reason = nothing_measured(rows)
    if reason:
        common.errors.print(f"[red]nothing was measured[/red]: {reason}")
        raise typer.Exit(1)
