"""`zooserve models pull`: fetch exactly the files a model's `source:` names, then verify them.

Files land where the model's loader looks for them by model_id: a hub model_id in the hub
cache (the loader finds the snapshot offline), a `{MODEL_ZOO_PATH}/x.pt` model_id at that path
(the one file, renamed), any other local model_id as a directory of the files. One model's
failure (offline, gated, 404, network) is reported with its reason; the others still run.

The hub is reached only through a `Hub` (hub.py: three functions), so tests pass a fake one;
weight_files.py says whether a downloaded file is usable weights.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from zooserve.catalog import Config, ModelSource, ModelSpec, is_builtin_id, is_hub_id
from zooserve.cli.hub import OFFLINE_MESSAGE, Hub, explain, offline, real_hub
from zooserve.cli.weight_files import WEIGHT_SUFFIXES, verify_file

ULTRALYTICS_ASSETS = "https://github.com/ultralytics/assets/releases/download"
#: What a hub model without a `source:` takes: configs, tokenizers and safetensors weights.
DEFAULT_FILES = ["*.json", "*.txt", "*.model", "*.safetensors"]
_FILE_SUFFIXES = (".pt", ".pth", ".onnx", ".bin", ".safetensors", ".ckpt", ".gguf")
Say = Callable[[str], None]


class PullError(Exception):
    """A reason a model could not be fetched, worded for the person who ran `pull`."""


@dataclass
class PullResult:
    model: str
    status: Literal["pulled", "builtin", "no_source", "failed"]
    #: Where the loader will find the weights (hub snapshot, file or directory).
    path: str | None = None
    files: list[str] = field(default_factory=list)
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("pulled", "builtin")


# --- choosing models and files -----------------------------------------------------------------


def select_models(config: Config, name: str | None, every: bool, task: str | None) -> list[str]:
    """NAME, --all or --task T (a task under tasks:, or `zoo` for the trigger models); a
    detection tracker brings its detector."""
    if every:
        chosen = list(config.models)
    elif task is not None:
        if task == "zoo":
            chosen = [t.model for t in config.zoo.triggers]
        elif task in config.tasks:
            chosen = list(config.tasks[task].options)
        else:
            known = ", ".join([*config.tasks, "zoo"])
            raise PullError(f"unknown task {task!r}; known: {known}")
    elif name is not None:
        if name not in config.models:
            raise PullError(f"unknown model {name!r}; known: {', '.join(sorted(config.models))}")
        chosen = [name]
    else:
        raise PullError("name a model, or pass --all or --task TASK")
    for model in list(chosen):
        detector = config.models[model].options.get("detector")
        if config.models[model].family == "detection_tracker" and detector in config.models:
            chosen.append(str(detector))
    return list(dict.fromkeys(chosen))


def effective_source(spec: ModelSpec) -> ModelSource | None:
    """The configured source; a hub model_id without one takes DEFAULT_FILES from its repo."""
    if spec.source is not None:
        return spec.source
    if is_hub_id(spec.model_id) and not is_builtin_id(spec.model_id):
        return ModelSource(repo=spec.model_id, files=DEFAULT_FILES)
    return None


def resolve_files(source: ModelSource, hub: Hub) -> list[str]:
    """The repo paths to take: literal entries as given, globs and `a|b` against the listing.

    A glob may match nothing; a literal or an `a|b` entry the repo lacks is an error, as is
    a selection with no weights file."""
    assert source.repo is not None
    entries = source.files
    listing: list[str] | None = None
    if any(_is_pattern(entry) for entry in entries):
        listing = hub.list_files(source.repo, source.revision)
    chosen: list[str] = []
    for entry in entries:
        if listing is None or not _is_pattern(entry):
            chosen.append(entry)
        elif "|" in entry:
            options = [o.strip() for o in entry.split("|")]
            found = next((m for o in options for m in _matches(o, listing)), None)
            if found is None:
                raise PullError(f"{source.repo} has none of {' | '.join(options)} (404)")
            chosen.append(found)
        else:
            chosen += _matches(entry, listing)
    chosen = list(dict.fromkeys(chosen))
    if not any(path.endswith(WEIGHT_SUFFIXES) for path in chosen):
        raise PullError(
            f"no weights file among {chosen or 'nothing'} from {source.repo} "
            f"(files: {entries}); list the weights under source.files"
        )
    return chosen


def _is_pattern(entry: str) -> bool:
    return "|" in entry or bool(_GLOB_CHARS.intersection(entry))


_GLOB_CHARS = set("*?[")


def _matches(pattern: str, listing: list[str]) -> list[str]:
    """Files matching `pattern`; `*` does not cross a `/` (top level by default)."""
    depth = pattern.count("/")
    return [p for p in listing if p.count("/") == depth and fnmatch.fnmatchcase(p, pattern)]


# --- fetching ----------------------------------------------------------------------------------


def target_of(config: Config, spec: ModelSpec) -> tuple[Literal["cache", "file", "dir"], Path]:
    """Where the loader looks: the hub cache, one file, or a directory (by the model_id)."""
    model_id = config.expand_model_id(spec)
    if is_hub_id(model_id) and not Path(model_id).exists():
        return "cache", Path(model_id)
    path = Path(model_id)
    return ("file" if path.suffix.lower() in _FILE_SUFFIXES else "dir"), path


def _place(src: Path, dest: Path) -> None:
    """Copy the cached file to `dest` atomically (a half-copied checkpoint never appears)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    shutil.copyfile(src, partial)
    os.replace(partial, dest)


def pull_model(config: Config, spec: ModelSpec, hub: Hub, say: Say) -> PullResult:
    """Fetch and verify one model's files; never raises for the model's own problems."""
    name = spec.name
    if is_builtin_id(spec.model_id):
        return PullResult(name, "builtin", spec.model_id, reason="ships inside a package")
    source = effective_source(spec)
    if source is None:
        return PullResult(
            name,
            "no_source",
            reason=f"no source configured: add source: to models.{name} (a hub repo with its "
            f"files, or an ultralytics asset), or place the weights at "
            f"{config.expand_model_id(spec)}",
        )
    if source.kind == "none":
        return PullResult(name, "no_source", reason=f"no public source: {source.none}")
    if source.note:
        say(f"  note: {source.note}")
    try:
        if source.kind == "ultralytics":
            return _pull_ultralytics(config, spec, source, hub, say)
        return _pull_repo(config, spec, source, hub, say)
    except PullError as exc:
        return PullResult(name, "failed", reason=str(exc))
    except Exception as exc:  # a disk or copy error: this model fails, the run goes on
        return PullResult(name, "failed", reason=f"{type(exc).__name__}: {exc}")


def _pull_ultralytics(
    config: Config, spec: ModelSpec, source: ModelSource, hub: Hub, say: Say
) -> PullResult:
    asset = str(source.ultralytics)
    kind, dest = target_of(config, spec)
    if kind != "file":
        raise PullError(f"an ultralytics asset needs a file model_id, got {dest}")
    expected = source.sha256.get(asset)
    if dest.is_file() and verify_file(dest, expected) is None:
        say(f"  {asset}: already at {dest}")
        return PullResult(spec.name, "pulled", str(dest), [asset])
    url = f"{ULTRALYTICS_ASSETS}/{source.release}/{asset}"
    say(f"  {url}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    try:
        hub.fetch_url(url, partial)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        raise PullError(explain(exc, None, url)) from exc
    problem = verify_file(partial, expected)
    if problem:
        partial.unlink(missing_ok=True)
        raise PullError(f"{asset}: {problem}")
    os.replace(partial, dest)
    return PullResult(spec.name, "pulled", str(dest), [asset])


def _pull_repo(
    config: Config, spec: ModelSpec, source: ModelSource, hub: Hub, say: Say
) -> PullResult:
    repo = str(source.repo)
    kind, target = target_of(config, spec)
    try:
        files = resolve_files(source, hub)
    except PullError:
        raise
    except Exception as exc:  # listing the repo failed: gated, 404, offline, network
        raise PullError(explain(exc, repo, "the file list")) from exc
    if kind == "file" and len(files) != 1:
        raise PullError(f"model_id {target} is one file, but source.files selects {files}")
    problems: list[str] = []
    snapshot: Path | None = None
    for filename in files:
        say(f"  {repo}/{filename}")
        try:
            cached = Path(hub.download(repo, filename, source.revision))
        except Exception as exc:
            problems.append(explain(exc, repo, filename))
            if problems[-1].startswith(("gated", "repository", "HF_HUB_OFFLINE")):
                break  # every other file of the repo would say the same
            continue
        problem = verify_file(cached, source.sha256.get(filename))
        if problem:
            problems.append(f"{filename}: {problem}")
            continue
        if kind == "file":
            _place(cached, target)
        elif kind == "dir":
            _place(cached, target / filename)
        else:
            snapshot = cached.parents[filename.count("/")]
    if problems:
        raise PullError("; ".join(problems))
    where = str(snapshot) if kind == "cache" else str(target)
    return PullResult(spec.name, "pulled", where, files)


def pull_models(
    config: Config, names: list[str], hub: Hub | None = None, say: Say = print
) -> list[PullResult]:
    """Pull each named model in turn; refused as a whole when the machine is set offline."""
    if offline():
        raise PullError(OFFLINE_MESSAGE)
    hub = hub or real_hub()
    results = []
    for index, name in enumerate(names, 1):
        say(f"[{index}/{len(names)}] {name}")
        results.append(pull_model(config, config.models[name], hub, say))
    return results


def summary_rows(results: list[PullResult]) -> list[dict[str, Any]]:
    return [
        {"model": r.model, "status": r.status, "path": r.path, "reason": r.reason} for r in results
    ]
