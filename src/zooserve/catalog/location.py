"""Which config file zooserve reads, so the CLI works from any directory.

Looked for in order: `--config`, `$ZOOSERVE_CONFIG`, `./config/models.yaml`, the user's config
directory (`~/.config/zooserve/models.yaml` on Linux), then the config that ships inside the
package. An explicit `--config` or `$ZOOSERVE_CONFIG` is the only place looked: a mistyped path
is an error, never a silent fall-back to another file.

Relative paths in a config resolve against the file's own directory. The packaged config reads
as though it were `<user data dir>/config/models.yaml` (`~/.local/share/zooserve` on Linux), so
its `../media`, `../models` and `../state` land in the user's data directory, never inside
site-packages and never wherever the command happened to run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from zooserve.core.errors import ConfigError

APP_NAME = "zooserve"
#: The default config inside the package (in the source tree, a link to config/models.yaml).
PACKAGED_CONFIG = Path(__file__).parent.parent / "config" / "models.yaml"
LOCAL_CONFIG = Path("config/models.yaml")


@dataclass(frozen=True)
class ConfigLocation:
    path: Path
    #: Where the config's relative paths (media_root, model_zoo_path, jobs_db) resolve.
    base_dir: Path


def user_config_file() -> Path:
    return platformdirs.user_config_path(APP_NAME) / "models.yaml"


def packaged_base_dir() -> Path:
    """The packaged config's stand-in directory: `../x` in it is `<user data dir>/x`."""
    return platformdirs.user_data_path(APP_NAME) / "config"


def candidates(explicit: str | Path | None) -> list[tuple[str, Path]]:
    """(where, path) in the order they are tried."""
    if explicit:
        return [("--config", Path(explicit))]
    env = os.environ.get("ZOOSERVE_CONFIG")
    if env:
        return [("$ZOOSERVE_CONFIG", Path(env))]
    return [
        ("current directory", LOCAL_CONFIG),
        ("user config directory", user_config_file()),
        ("packaged default", PACKAGED_CONFIG),
    ]


def locate_config(explicit: str | Path | None = None) -> ConfigLocation:
    """The first config file that exists; ConfigError naming every place looked otherwise."""
    tried = candidates(explicit)
    for _, path in tried:
        if path.is_file():
            packaged = path.absolute() == PACKAGED_CONFIG.absolute()
            base = packaged_base_dir() if packaged else path.resolve().parent
            return ConfigLocation(path, base)
    looked = [f"{where}: {path.absolute()}" for where, path in tried]
    raise ConfigError(
        "config file not found; looked in:\n  "
        + "\n  ".join(looked)
        + "\n(pass --config FILE or set ZOOSERVE_CONFIG)",
        {"looked_in": [str(path.absolute()) for _, path in tried]},
    )
