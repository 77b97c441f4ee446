"""`zooserve models list|info|pull|load|unload|ps`: the configured models, and a server's."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from zooserve.cli.common import ConfigOption, KeyOption, UrlOption, load_config_or_exit
from zooserve.cli.common import console as out
from zooserve.cli.common import errors as err

if TYPE_CHECKING:
    from zooserve.catalog import ModelSpec

app = typer.Typer(help="Inspect and fetch the configured models.", no_args_is_help=True)
ServerOption = Annotated[str, typer.Option(help="the running zooserve")]
DEFAULT_URL = "http://127.0.0.1:8000"


def remote(url: str, method: str, path: str, api_key: str | None, **kwargs: Any) -> Any:
    """A JSON answer from a running server; an error or no answer exits with code 1."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.request(
            method, url.rstrip("/") + path, headers=headers, timeout=600, **kwargs
        )
    except httpx.TransportError as exc:
        err.print(f"[red]cannot reach {url}[/red]: {exc}")
        raise typer.Exit(1) from exc
    body = response.json()
    if response.status_code >= 400:
        error = body.get("error", {})
        err.print(f"[red]{response.status_code} {error.get('code')}[/red]: {error.get('message')}")
        raise typer.Exit(1)
    return body


@app.command("ps")
def models_ps(url: ServerOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """What a running server holds now: bytes, leases, keep-alive expiry (like `ollama ps`)."""
    info = remote(url, "GET", "/models/info?events=0", api_key)
    title = f"{info['memory_used_mb']:.1f} / {info['memory_budget_mb']:.0f} MB on {info['device']}"
    table = Table("name", "family", "measured MB", "peak MB", "in use", "expires in", title=title)
    for name, m in info["models"].items():
        if m["status"] not in ("loaded", "loading", "unloading"):
            continue
        if m["pinned"]:
            expires = "pinned"
        elif m["expires_in_seconds"] is None:
            expires = "in use"
        else:
            expires = f"{m['expires_in_seconds']:.0f} s"
        table.add_row(
            name,
            str(m["family"]),
            f"{m['memory_mb_measured'] or 0:.2f}",
            f"{m['peak_mb_measured'] or 0:.2f}",
            str(m["in_use"]),
            expires,
        )
    out.print(table)


@app.command("info")
def models_info(
    name: str, url: UrlOption = None, api_key: KeyOption = None, config: ConfigOption = None
) -> None:
    """One model's record (from a running server with --url, else from the config): `source`
    is where `models pull` fetches it, `local_path` where its weights are here (null: absent),
    `available` whether this version can serve it (the rule /models/info uses)."""
    if url:
        info = remote(url, "GET", "/models/info?events=0", api_key)["models"]
        if name not in info:
            err.print(f"[red]unknown model {name!r}[/red]")
            raise typer.Exit(2)
        typer.echo(json.dumps(info[name], indent=2))
        return
    from zooserve.families import sources

    cfg = load_config_or_exit(config)
    spec = cfg.models.get(name)
    if spec is None:
        err.print(f"[red]unknown model {name!r}[/red]; known: {', '.join(sorted(cfg.models))}")
        raise typer.Exit(2)
    local = sources.locate(cfg, spec)
    record = {
        **spec.model_dump(),
        "source": source_record(spec),
        "local_path": local,
        "available": sources.available(cfg, spec),
        "family": sources.infer_family(cfg, spec, local),
        "fetch_with": None if local else sources.pull_command(spec),
    }
    typer.echo(json.dumps(record, indent=2, default=str))


def source_record(spec: ModelSpec) -> dict[str, Any] | None:
    """The source `models pull` uses for `spec` (a hub model_id without one: its repo's
    default files), with only the fields that apply to its kind."""
    from zooserve.cli.pull import effective_source

    source = effective_source(spec)
    if source is None:
        return None
    record = source.model_dump(exclude_defaults=True)
    if source.kind == "ultralytics":
        record["release"] = source.release
    return record


@app.command("load")
def models_load(name: str, url: ServerOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """Load a model on a running server now."""
    typer.echo(json.dumps(remote(url, "POST", "/models/load", api_key, json={"model_id": name})))


@app.command("unload")
def models_unload(name: str, url: ServerOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """Unload a model on a running server and report the memory recovered."""
    body = remote(url, "POST", "/models/unload", api_key, json={"model_id": name})
    typer.echo(json.dumps(body))


@app.command("list")
def models_list(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
) -> None:
    """Every configured model: family, category, estimate, and whether it can be served here
    (its files are present and an adapter reads its family, as /models/info says)."""
    from zooserve.families import sources

    cfg = load_config_or_exit(config)
    rows = []
    for name, spec in cfg.models.items():
        local = sources.locate(cfg, spec)
        rows.append(
            {
                "name": name,
                "family": sources.infer_family(cfg, spec, local),
                "category": spec.category,
                "framework": spec.framework,
                "vram_mb": spec.vram_mb,
                "enabled": spec.enabled,
                "available": sources.available(cfg, spec),
                "fetch_with": None if local else sources.pull_command(spec),
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="configured models")
    for header in ("name", "family", "category", "framework", "est. MB", "here"):
        table.add_column(header, overflow="fold")
    for row in rows:
        if row["available"]:
            mark = "[green]yes[/green]"
        else:
            mark = "[yellow]no[/yellow]" if row["enabled"] else "[dim]disabled[/dim]"
        estimate = "" if row["vram_mb"] is None else f"{row['vram_mb']:g}"
        cells = (row["name"], row["family"], row["category"], row["framework"])
        table.add_row(*(str(c) for c in cells), estimate, mark)
    out.print(table)
    if any(row["fetch_with"] for row in rows):
        out.print(
            "[yellow]no[/yellow]: not on this machine; fetch with `zooserve models pull NAME` "
            "(or --all, or --task TASK; needs network)"
        )


@app.command("pull")
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
    from zooserve.cli.pull import PullError, pull_models, select_models

    cfg = load_config_or_exit(config)
    try:
        names = select_models(cfg, name, every, task)
        results = pull_models(cfg, names, say=out.print)
    except PullError as exc:
        out.print(f"[red]{exc}[/red]")
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
    out.print(table)
    # A model without a public source fails the run only when it was asked for by name.
    failed = [r for r in results if r.status == "failed" or (r.status == "no_source" and name)]
    if failed:
        out.print(f"[red]not fetched:[/red] {', '.join(r.model for r in failed)}")
        raise typer.Exit(1)
