"""Issue 22.1: the CLI works from any directory. The config is looked for in --config,
$ZOOSERVE_CONFIG, ./config/models.yaml, the user's config directory, then the copy inside the
package; when none is found, the error names every place looked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from zooserve.catalog import load_config
from zooserve.cli import app

SHIPPED = Path(__file__).parents[1] / "config" / "models.yaml"


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory outside the repo, a home of its own, no ZOOSERVE_CONFIG."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / "data"))
    monkeypatch.delenv("ZOOSERVE_CONFIG", raising=False)
    return tmp_path


def write_config(path: Path, **changes: object) -> Path:
    data = yaml.safe_load(SHIPPED.read_text())
    data.update(changes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_console_script_lists_models_from_outside_the_repo(elsewhere: Path) -> None:
    script = Path(sys.executable).with_name("zooserve")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [str(script), "models", "list", "--json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["opencv-face"]["available"] is True and "owlv2-base" in rows


def test_the_packaged_config_is_the_repos_and_ships_as_package_data() -> None:
    from zooserve.catalog import location as config_location

    assert config_location.PACKAGED_CONFIG.read_bytes() == SHIPPED.read_bytes()
    pyproject = (SHIPPED.parents[1] / "pyproject.toml").read_text()
    assert '"config/models.yaml"' in pyproject


def test_packaged_config_keeps_its_files_in_the_user_data_directory(elsewhere: Path) -> None:
    config = load_config()
    data = elsewhere / "home" / "data" / "zooserve"
    assert config.media_dir == data / "media"
    assert config.resolve_path(config.jobs_db) == data / "state" / "jobs.sqlite3"
    assert config.resolve_path(config.model_zoo_path) == data / "models"


def test_lookup_order_current_directory_then_user_config(elsewhere: Path) -> None:
    from zooserve.catalog import location as config_location

    user = write_config(elsewhere / "home" / "config" / "zooserve" / "models.yaml", device="cpu")
    assert config_location.locate_config().path == user
    assert load_config().device == "cpu"
    local = write_config(elsewhere / "config" / "models.yaml", device="cuda:1")
    assert config_location.locate_config().path.resolve() == local
    assert load_config().media_dir == elsewhere / "media"  # relative to the file, as before
    os.environ["ZOOSERVE_CONFIG"] = str(user)  # monkeypatch restores the environment
    assert load_config().device == "cpu"
    assert load_config(local).device == "cuda:1"


def test_no_config_anywhere_names_every_place_looked(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = elsewhere / "not-installed" / "models.yaml"
    try:
        from zooserve.catalog import location as config_location

        monkeypatch.setattr(config_location, "PACKAGED_CONFIG", missing)
    except ImportError:  # before issue 22 there was no packaged config to hide
        pass
    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 2 and result.stdout == ""
    for place in (
        elsewhere / "config" / "models.yaml",
        elsewhere / "home" / "config" / "zooserve" / "models.yaml",
        missing,
    ):
        assert str(place) in result.stderr
    explicit = CliRunner().invoke(app, ["models", "list", "--config", "nope.yaml"])
    assert explicit.exit_code == 2 and f"--config: {elsewhere / 'nope.yaml'}" in explicit.stderr
