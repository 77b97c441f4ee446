"""Confine a caller's media path to media_root before anything opens it."""

from __future__ import annotations

from pathlib import Path

from zooserve.core.errors import InvalidInput, MediaNotFound, PathForbidden

#: Longest media path a request may give (Linux PATH_MAX is 4096 bytes).
MAX_PATH_CHARS = 1024


def resolve_media_path(media_root: Path, user_path: str) -> Path:
    """Resolve a caller-given path to an existing file strictly inside media_root.

    Symlinks are followed before the containment check, so a link inside media_root that points
    outside is rejected. Containment is checked before existence so that callers cannot probe
    which files exist outside media_root. Messages never reveal the server's media_root.
    """
    if not user_path or not user_path.strip() or "\x00" in user_path:
        raise InvalidInput("media path must be a non-empty string", {"path": user_path})
    if len(user_path) > MAX_PATH_CHARS:
        raise InvalidInput(
            f"media path is {len(user_path)} characters; the limit is {MAX_PATH_CHARS}",
            {"limit": MAX_PATH_CHARS},
        )
    try:
        root = Path(media_root).resolve()
        resolved = (root / user_path).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # loops, unreadable or too-long parts
        raise MediaNotFound(
            f"media path {user_path!r} cannot be resolved", {"path": user_path}
        ) from exc
    if not resolved.is_relative_to(root):
        raise PathForbidden(f"media path {user_path!r} is outside media_root", {"path": user_path})
    try:
        is_file = resolved.is_file()
    except (OSError, ValueError):  # ENAMETOOLONG, EACCES on a component
        is_file = False
    if not is_file:
        raise MediaNotFound(f"media file {user_path!r} not found", {"path": user_path})
    return resolved
