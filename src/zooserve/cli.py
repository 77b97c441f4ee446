"""The `zooserve` command line: serve, models, demo, bench."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from zooserve.catalog import Config

app = typer.Typer(
    help="zooserve: a zoo of vision and language models behind one HTTP service.",
    no_args_is_help=True,
)
models_app = typer.Typer(help="Inspect and fetch the configured models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console()
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="config YAML (default: $ZOOSERVE_CONFIG or config/models.yaml)"
    ),
]


def _config(path: Path | None) -> Config:
    """The config, or its error on stderr and exit code 2 (one place for every command)."""
    from zooserve.cli_tasks import load_config_or_exit

    return load_config_or_exit(path)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command()
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
    from zooserve.logs import configure_logging

    cfg = _config(config)
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


@app.command()
def demo(
    config: ConfigOption = None,
    port: Annotated[int, typer.Option(help="TCP port of the demo server")] = 8000,
    out: Annotated[Path, typer.Option(help="where annotated frames are written")] = Path(
        "out/demo"
    ),
    once: Annotated[bool, typer.Option("--once", help="exit after showing the result")] = False,
) -> None:
    """Start the service, detect on sample media over HTTP, and write annotated frames."""
    from zooserve.demo import run_demo

    _logging("warning")
    run_demo(_config(config), port=port, out=out, keep_serving=not once, console=console)


@app.command()
def bench(
    config: ConfigOption = None,
    models: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="model(s) to measure")
    ] = None,
    frames: Annotated[int, typer.Option(help="frames per model")] = 8,
    out: Annotated[Path, typer.Option(help="directory for bench.md and bench.json")] = Path(
        "out/bench"
    ),
    zoo: Annotated[
        bool, typer.Option("--zoo", help="every enabled zoo model; model-major vs naive order")
    ] = False,
    track: Annotated[
        bool, typer.Option("--track", help="tracked frames/s and session memory per tracker")
    ] = False,
) -> None:
    """Per model: memory, load and inference time, unload recovery; then HTTP/in-process."""
    _logging("warning")
    cfg = _config(config)
    if zoo:
        from zooserve.bench_zoo import run_zoo_bench

        run_zoo_bench(cfg, out=out, console=console)
        return
    if track:
        from zooserve.bench_track import run_track_bench

        run_track_bench(cfg, out=out, console=console)
        return
    from zooserve.bench import run_bench

    run_bench(cfg, models or [], frames=frames, out=out, console=console)


UrlOption = Annotated[
    str | None, typer.Option("--url", help="a running zooserve (default: run in this process)")
]
KeyOption = Annotated[
    str | None, typer.Option("--api-key", envvar="ZOOSERVE_API_KEY", help="bearer token")
]


@app.command()
def detect(
    file: Annotated[Path, typer.Argument(help="video or image")],
    frames: Annotated[str | None, typer.Option(help="frame numbers, e.g. 0,10,20")] = None,
    sample: Annotated[
        str | None, typer.Option(help="strategy:count, e.g. uniform:8, scene_change:5")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m")] = None,
    prompts: Annotated[str | None, typer.Option(help="comma-separated text queries")] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.3,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
    annotate: Annotated[
        Path | None, typer.Option(help="write annotated frames: OUT.png or OUT.mp4")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Detect objects in FILE (locally, or on the server given by --url)."""
    from zooserve.cli_tasks import config_loader, run_detect

    _logging("warning")
    run_detect(
        config_loader(config),
        file,
        frames,
        sample,
        model,
        prompts,
        threshold,
        url,
        api_key,
        as_json,
        annotate,
    )


JsonOption = Annotated[bool, typer.Option("--json", help="JSON on stdout")]


@app.command()
def track(
    file: Annotated[Path, typer.Argument(help="video")],
    start: Annotated[int, typer.Option(help="first frame")] = 0,
    end: Annotated[int | None, typer.Option(help="last frame (inclusive; default: +49)")] = None,
    prompts: Annotated[
        str | None, typer.Option(help="texts to track, e.g. person,car (the detector finds them)")
    ] = None,
    box: Annotated[
        list[str] | None, typer.Option(help="ID:x1,y1,x2,y2 at the first frame (repeatable)")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="tracking model")] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.3,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
    annotate: Annotated[Path | None, typer.Option(help="write OUT.mp4 with boxes and ids")] = None,
    config: ConfigOption = None,
) -> None:
    """Track objects through FILE (locally, or on the server given by --url)."""
    from zooserve.cli_tasks import config_loader, print_result, run_task, write_tracks
    from zooserve.cli_tasks import console as stderr

    _logging("warning")
    object_prompts: list[Any] = [p.strip() for p in (prompts or "").split(",") if p.strip()]
    for item in box or []:
        try:
            ident, coords = item.split(":")
            object_prompts.append(
                {"object_id": int(ident), "box": [float(v) for v in coords.split(",")]}
            )
        except ValueError as exc:
            raise typer.BadParameter(f"--box expects ID:x1,y1,x2,y2, got {item!r}") from exc
    body: dict[str, Any] = {
        "frame_range": {"start": start, "end": start + 49 if end is None else end},
        "confidence_threshold": threshold,
        "prompts": object_prompts or ["person"],
    }
    if model:
        body["tracking_model"] = model
    result = run_task("track", config_loader(config), file, body, url, api_key)
    print_result("track", result, as_json)
    if annotate:
        stderr.print(f"annotated: {write_tracks(file, annotate, result)}")


@app.command()
def enrich(
    file: Annotated[Path, typer.Argument(help="video or image")],
    frames: Annotated[str | None, typer.Option(help="frame numbers, e.g. 0,10,20")] = None,
    sample: Annotated[str, typer.Option(help="strategy:count when no --frames")] = "uniform:4",
    triggers: Annotated[str | None, typer.Option(help="comma-separated trigger names")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="primary detector")] = None,
    prompts: Annotated[str | None, typer.Option(help="detector text queries")] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.3,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Enrich detections in FILE with the zoo (each needed model loads once)."""
    from zooserve.cli_tasks import config_loader, print_result, run_task

    _logging("warning")
    body: dict[str, Any] = {"confidence_threshold": threshold}
    if frames:
        body["frame_numbers"] = [int(f) for f in frames.split(",") if f.strip()]
    else:
        strategy, _, count = sample.partition(":")
        body["sampling"] = {"strategy": strategy, "count": int(count or 4)}
    for key, value in (("triggers", triggers), ("prompts", prompts)):
        if value:
            body[key] = [v.strip() for v in value.split(",") if v.strip()]
    if model:
        body["model"] = model
    print_result(
        "enrich", run_task("enrich", config_loader(config), file, body, url, api_key), as_json
    )


@app.command()
def summarize(
    file: Annotated[Path, typer.Argument(help="video or image")],
    persona: Annotated[str, typer.Option(help="who the summary is for")],
    frame_count: Annotated[int, typer.Option(min=1)] = 8,
    sampling: Annotated[str, typer.Option(help="uniform | interval | keyframes | scene_change")] = (
        "uniform"
    ),
    model: Annotated[str | None, typer.Option("--model", "-m")] = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Summarize FILE for a persona with a vision-language model (through the engines)."""
    from zooserve.cli_tasks import config_loader, print_result, run_task

    _logging("warning")
    body: dict[str, Any] = {
        "persona_context": persona,
        "frame_count": frame_count,
        "sampling_strategy": sampling,
    }
    if model:
        body["model"] = model
    result = run_task("summarize", config_loader(config), file, body, url, api_key)
    print_result("summarize", result, as_json)


def _remote(url: str, method: str, path: str, api_key: str | None, **kwargs: Any) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.request(
            method, url.rstrip("/") + path, headers=headers, timeout=600, **kwargs
        )
    except httpx.TransportError as exc:
        console.print(f"[red]cannot reach {url}[/red]: {exc}")
        raise typer.Exit(1) from exc
    body = response.json()
    if response.status_code >= 400:
        error = body.get("error", {})
        console.print(
            f"[red]{response.status_code} {error.get('code')}[/red]: {error.get('message')}"
        )
        raise typer.Exit(1)
    return body


@models_app.command("ps")
def models_ps(
    url: Annotated[str, typer.Option(help="the running zooserve")] = "http://127.0.0.1:8000",
    api_key: KeyOption = None,
) -> None:
    """What a running server holds now: bytes, leases, keep-alive expiry (like `ollama ps`)."""
    info = _remote(url, "GET", "/models/info?events=0", api_key)
    table = Table(
        "name",
        "family",
        "measured MB",
        "peak MB",
        "in use",
        "expires in",
        title=f"{info['memory_used_mb']:.1f} / {info['memory_budget_mb']:.0f} MB on "
        f"{info['device']}",
    )
    for name, m in info["models"].items():
        if m["status"] not in ("loaded", "loading", "unloading"):
            continue
        expires = (
            "pinned"
            if m["pinned"]
            else (
                "in use" if m["expires_in_seconds"] is None else f"{m['expires_in_seconds']:.0f} s"
            )
        )
        table.add_row(
            name,
            str(m["family"]),
            f"{m['memory_mb_measured'] or 0:.2f}",
            f"{m['peak_mb_measured'] or 0:.2f}",
            str(m["in_use"]),
            expires,
        )
    console.print(table)


@models_app.command("info")
def models_info(
    name: str, url: UrlOption = None, api_key: KeyOption = None, config: ConfigOption = None
) -> None:
    """One model's record (from a running server with --url, else from the config)."""
    if url:
        info = _remote(url, "GET", "/models/info?events=0", api_key)["models"]
        if name not in info:
            console.print(f"[red]unknown model {name!r}[/red]")
            raise typer.Exit(2)
        typer.echo(json.dumps(info[name], indent=2))
        return
    from zooserve import sources

    cfg = _config(config)
    spec = cfg.models.get(name)
    if spec is None:
        console.print(f"[red]unknown model {name!r}[/red]; known: {', '.join(sorted(cfg.models))}")
        raise typer.Exit(2)
    source = sources.locate(cfg, spec)
    record = {
        **spec.model_dump(),
        "source": source,
        "available": source is not None,
        "family": sources.infer_family(cfg, spec, source),
    }
    typer.echo(json.dumps(record, indent=2, default=str))


@models_app.command("load")
def models_load(
    name: str,
    url: Annotated[str, typer.Option(help="the running zooserve")] = "http://127.0.0.1:8000",
    api_key: KeyOption = None,
) -> None:
    """Load a model on a running server now."""
    typer.echo(json.dumps(_remote(url, "POST", "/models/load", api_key, json={"model_id": name})))


@models_app.command("unload")
def models_unload(
    name: str,
    url: Annotated[str, typer.Option(help="the running zooserve")] = "http://127.0.0.1:8000",
    api_key: KeyOption = None,
) -> None:
    """Unload a model on a running server and report the memory recovered."""
    body = _remote(url, "POST", "/models/unload", api_key, json={"model_id": name})
    typer.echo(json.dumps(body))


@models_app.command("list")
def models_list(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
) -> None:
    """Every configured model: family, category, estimate, and whether it is present here."""
    from zooserve import sources

    cfg = _config(config)
    rows = []
    for name, spec in cfg.models.items():
        source = sources.locate(cfg, spec)
        rows.append(
            {
                "name": name,
                "family": sources.infer_family(cfg, spec, source),
                "category": spec.category,
                "framework": spec.framework,
                "vram_mb": spec.vram_mb,
                "enabled": spec.enabled,
                "available": spec.enabled and source is not None,
                "fetch_with": None if source else sources.pull_command(spec),
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="configured models")
    for header in ("name", "family", "category", "framework", "est. MB", "here"):
        table.add_column(header, overflow="fold")
    for row in rows:
        mark = (
            "[green]yes[/green]"
            if row["available"]
            else ("[dim]disabled[/dim]" if not row["enabled"] else "[yellow]no[/yellow]")
        )
        table.add_row(
            str(row["name"]),
            str(row["family"]),
            str(row["category"]),
            str(row["framework"]),
            "" if row["vram_mb"] is None else f"{row['vram_mb']:g}",
            mark,
        )
    console.print(table)
    if any(row["fetch_with"] for row in rows):
        console.print(
            "[yellow]no[/yellow]: not on this machine; fetch with `zooserve models pull NAME` "
            "(or --all, or --task TASK; needs network)"
        )


@models_app.command("pull")
def models_pull(
    name: Annotated[str | None, typer.Argument(help="the model to fetch")] = None,
    every: Annotated[bool, typer.Option("--all", help="every configured model")] = False,
    task: Annotated[
        str | None, typer.Option("--task", help="a task's options (or `zoo`: the triggers' models)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Fetch only the files each model's `source:` names, verify them, report each model.

    Needs network (refused with HF_HUB_OFFLINE=1). Exit code 1 when any model failed."""
    from zooserve.pull import PullError, pull_models, select_models

    cfg = _config(config)
    try:
        names = select_models(cfg, name, every, task)
        results = pull_models(cfg, names, say=console.print)
    except PullError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1 if "HF_HUB_OFFLINE" in str(exc) else 2) from exc
    table = Table("model", "result", "where / why", title="models pull")
    for result in results:
        if result.ok:
            mark, detail = f"[green]{result.status}[/green]", str(result.path)
        elif result.status == "no_source":
            mark, detail = "[yellow]no source[/yellow]", str(result.reason)
        else:
            mark, detail = "[red]failed[/red]", str(result.reason)
        table.add_row(result.model, mark, detail)
    console.print(table)
    # A model without a public source fails the run only when it was asked for by name.
    failed = [r for r in results if r.status == "failed" or (r.status == "no_source" and name)]
    if failed:
        console.print(f"[red]not fetched:[/red] {', '.join(r.model for r in failed)}")
        raise typer.Exit(1)


from zooserve.cli_tasks import ocr as _ocr  # noqa: E402  (light: heavy imports are lazy)

app.command("ocr")(_ocr)
