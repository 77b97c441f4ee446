"""What every command shares: the two consoles, the common options, reading the config.

Results go to stdout (`console`); progress and every error go to stderr (`errors`), so `--json`
output can be piped. Heavy imports (numpy, supervision, the pipelines) are made where they are
used: the `zooserve` command starts without them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from zooserve.catalog import Config

console = Console()
errors = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="config YAML (default: the first of $ZOOSERVE_CONFIG, ./config/models.yaml, "
        "the user's config directory, the packaged default)",
    ),
]
UrlOption = Annotated[
    str | None, typer.Option("--url", help="a running zooserve (default: run in this process)")
]
KeyOption = Annotated[
    str | None, typer.Option("--api-key", envvar="ZOOSERVE_API_KEY", help="bearer token")
]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON on stdout")]
FramesOption = Annotated[str | None, typer.Option(help="frame numbers, e.g. 0,10,20")]


def quiet_logging(level: str = "warning") -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def load_config_or_exit(path: Path | None) -> Config:
    """The config (see zooserve.catalog.location for where it is looked for); an invalid or
    missing one is reported on stderr with exit code 2."""
    from zooserve.catalog import load_config
    from zooserve.core.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        errors.print(exc.message, style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc


def config_loader(path: Path | None) -> Callable[[], Config]:
    """A loader for the tasks that reads `path` only when a task runs here (not with --url)."""
    return lambda: load_config_or_exit(path)


def fail(exc: Exception) -> typer.Exit:
    """Report a ZooError (status, code, message) on stderr; the exit to raise (code 1)."""
    status, code = getattr(exc, "status", ""), getattr(exc, "code", type(exc).__name__)
    errors.print(f"[red]{status} {code}[/red]: {getattr(exc, 'message', str(exc))}")
    return typer.Exit(1)


def split_list(value: str | None) -> list[str]:
    """`a, b,c` -> ["a", "b", "c"] (empty items dropped)."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def parse_numbers(frames: str) -> list[int]:
    try:
        return [int(f) for f in split_list(frames)]
    except ValueError as exc:
        raise typer.BadParameter(f"--frames must be integers, got {frames!r}") from exc


def frame_selection(frames: str | None, sample: str) -> dict[str, Any]:
    """The request's `frame_numbers` (`--frames 0,10`) or `sampling` (`--sample uniform:4`)."""
    if frames:
        return {"frame_numbers": parse_numbers(frames)}
    strategy, _, count = sample.partition(":")
    try:
        return {"sampling": {"strategy": strategy, "count": int(count or 4)}}
    except ValueError as exc:
        raise typer.BadParameter(f"--sample expects strategy:count, got {sample!r}") from exc
