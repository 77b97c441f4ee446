"""The hub, as `zooserve models pull` reaches it: three functions in a `Hub` (tests pass fakes),
the real ones over huggingface_hub and httpx, and the reason a failure gives a person (gated,
404, offline, network)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Hub:
    """The three ways `pull` reaches the network; tests pass fakes."""

    #: (repo_id, filename, revision) -> path of the file in the local hub cache.
    download: Callable[[str, str, str | None], str]
    #: (repo_id, revision) -> every file path in the repo.
    list_files: Callable[[str, str | None], list[str]]
    #: (url, destination file) -> None, writing the file with a progress bar.
    fetch_url: Callable[[str, Path], None]


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


OFFLINE_MESSAGE = (
    "HF_HUB_OFFLINE=1: refusing to download (this machine is set offline). "
    "Unset HF_HUB_OFFLINE, on a machine with network, to pull"
)


# --- the real hub ------------------------------------------------------------------------------


def _hf_download(repo: str, filename: str, revision: str | None) -> str:
    from huggingface_hub import hf_hub_download

    return str(hf_hub_download(repo, filename, revision=revision))  # shows its own tqdm bar


def _hf_list(repo: str, revision: str | None) -> list[str]:
    from huggingface_hub import list_repo_files

    return list(list_repo_files(repo, revision=revision))


def _http_fetch(url: str, dest: Path) -> None:
    import httpx
    from tqdm import tqdm

    with httpx.stream("GET", url, follow_redirects=True, timeout=60) as response:
        response.raise_for_status()
        total = int(response.headers.get("content-length") or 0) or None
        with (
            open(dest, "wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar,
        ):
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def real_hub() -> Hub:
    return Hub(download=_hf_download, list_files=_hf_list, fetch_url=_http_fetch)


def explain(exc: BaseException, repo: str | None, what: str) -> str:
    """The reason, for a person: gated, needs a token, 404, revision, offline or network."""
    from huggingface_hub import errors

    url = f"https://huggingface.co/{repo}" if repo else None
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, errors.GatedRepoError) or status == 403:
        return f"gated: accept the licence at {url} and set HF_TOKEN (HTTP {status or 403})"
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"revision not found in {repo} (404)"
    if isinstance(exc, errors.RemoteEntryNotFoundError | errors.EntryNotFoundError) and not (
        isinstance(exc, errors.LocalEntryNotFoundError)
    ):
        return f"{what} not found in {repo} (404)"
    if isinstance(exc, errors.RepositoryNotFoundError) or status == 401:
        return (
            f"repository {repo} not found, or private (HTTP {status or 401}): check the id; "
            "if it is gated, accept its licence at the model page and set HF_TOKEN"
        )
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return OFFLINE_MESSAGE
    if status is not None:
        return f"HTTP {status} for {what}: {exc}"
    if isinstance(exc, errors.LocalEntryNotFoundError | ConnectionError | TimeoutError):
        return f"network error fetching {what}: cannot reach the server ({exc})"
    return f"network error fetching {what}: {type(exc).__name__}: {exc}"
