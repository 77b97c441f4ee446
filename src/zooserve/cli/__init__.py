"""The `zooserve` command line: one module per command group.

service (serve, demo, bench), tasks (detect, track, enrich, summarize), ocr, models (list, info,
pull, load, unload, ps); common holds the options and consoles they share, render and annotated
what the task commands show and draw, local the pipelines run in this process.
"""

from __future__ import annotations

import typer

from zooserve.cli import models, ocr, service, tasks

app = typer.Typer(
    help="zooserve: a zoo of vision and language models behind one HTTP service.",
    no_args_is_help=True,
)
for command in (
    service.serve,
    service.demo,
    service.bench,
    tasks.detect,
    tasks.track,
    tasks.enrich,
    tasks.summarize,
    ocr.ocr,
):
    app.command()(command)
app.add_typer(models.app, name="models")

__all__ = ["app"]
