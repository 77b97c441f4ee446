"""The command line: typer's runner in-process, and the real console script as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from zooserve.cli import app

SHIPPED = Path(__file__).parents[1] / "config" / "models.yaml"
runner = CliRunner()


def test_models_list_json_reports_offline_availability() -> None:
    result = runner.invoke(app, ["models", "list", "--config", str(SHIPPED), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["opencv-face"]["available"] is True
    assert rows["owlv2-base"]["available"] is False
    assert rows["owlv2-base"]["fetch_with"] == "zooserve models pull owlv2-base"
    assert rows["yolo26-general"]["enabled"] is True  # YOLO26 weights are published (issue 12)


def test_pull_refuses_while_offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["models", "pull", "owlv2-base", "--config", str(SHIPPED)])
    assert result.exit_code == 1 and "refusing to download" in result.output
    result = runner.invoke(app, ["models", "pull", "ghost", "--config", str(SHIPPED)])
    assert result.exit_code == 2 and "unknown model" in result.output


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"device": "gpu", "models": {}}))
    result = runner.invoke(app, ["models", "list", "--config", str(path)])
    assert result.exit_code == 2
    assert "device" in result.output and "expected auto, cpu, cuda or cuda:N" in result.output


def test_demo_runs_end_to_end_and_writes_annotated_frames(tmp_path: Path) -> None:
    config = yaml.safe_load(SHIPPED.read_text())
    config["media_root"] = str(tmp_path / "media")
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    command = [
        sys.executable,
        "-m",
        "zooserve",
        "demo",
        "--once",
        "--port",
        "0",
        "--config",
        str(path),
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "yolov3-tiny-coco" in done.stdout and "opencv-face" in done.stdout
    # The real COCO detector finds what a newcomer sees in bikes.mp4: people, cars, a bicycle.
    assert all(label in done.stdout for label in ("person", "car", "bicycle")), done.stdout
    written = sorted(p.name for p in out.glob("*.png"))
    assert "astronaut-frame0000.png" in written and len(written) == 5
    # The face is tracked through the clip by the offline face tracker the prompt selects,
    # and the street sign is read by the whole-frame text trigger.
    assert "with mtcnn-bytetrack: object ids [1]" in done.stdout
    assert "MAIN STREET | EXIT 42" in done.stdout
    assert (out / "faces_walk-tracked.mp4").stat().st_size > 0 and "street_sign-text.png" in written


def test_detect_runs_locally_with_json_and_annotated_output(tmp_path: Path) -> None:
    from zooserve.media.samples import sample_files

    out = tmp_path / "astronaut.png"
    result = runner.invoke(
        app,
        [
            "detect",
            str(sample_files()["astronaut.png"]),
            "-m",
            "opencv-face",
            "--json",
            "--annotate",
            str(out),
            "--config",
            str(SHIPPED),
        ],
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert [d["label"] for d in body["frames"][0]["detections"]] == ["face"]
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_detect_and_models_commands_against_a_running_server(tmp_path: Path) -> None:
    from zooserve.api.server import BackgroundServer
    from zooserve.catalog import load_config
    from zooserve.media.samples import sample_files

    config = yaml.safe_load(SHIPPED.read_text())
    config.update(media_root=str(tmp_path / "media"), jobs_db=str(tmp_path / "jobs.sqlite3"))
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    video = tmp_path / "elsewhere" / "bikes.mp4"  # outside media_root: it is uploaded
    video.parent.mkdir()
    video.write_bytes(sample_files()["bikes.mp4"].read_bytes())
    with BackgroundServer(load_config(path), api_key="k") as server:
        args = ["--url", server.url, "--api-key", "k"]
        result = runner.invoke(
            app,
            [
                "detect",
                str(video),
                "--frames",
                "78,106",
                "-m",
                "opencv-hog-people",
                "--json",
                "--annotate",
                str(tmp_path / "bikes.mp4"),
                *args,
            ],
        )
        assert result.exit_code == 0, result.output
        assert [f["frame_number"] for f in json.loads(result.stdout)["frames"]] == [78, 106]
        assert (tmp_path / "bikes.mp4").stat().st_size > 1000
        assert "opencv-hog-people" in runner.invoke(app, ["models", "ps", *args]).output
        unloaded = runner.invoke(app, ["models", "unload", "opencv-hog-people", *args])
        assert json.loads(unloaded.stdout)["status"] == "unloaded"
        wrong = runner.invoke(app, ["models", "ps", "--url", server.url, "--api-key", "x"])
        assert wrong.exit_code == 1 and "401" in wrong.output


def test_track_and_enrich_run_locally(tmp_path: Path) -> None:
    from zooserve.media.samples import sample_files

    video = str(sample_files()["bikes.mp4"])
    out = tmp_path / "tracks.mp4"
    result = runner.invoke(
        app,
        [
            "track",
            video,
            "--start",
            "70",
            "--end",
            "80",
            "-m",
            "hog-bytetrack",
            "--json",
            "--annotate",
            str(out),
            "--config",
            str(SHIPPED),
        ],
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["model"] == "hog-bytetrack"
    assert [f["frame_number"] for f in body["frames"]] == list(range(70, 81))
    assert any(f["objects"] for f in body["frames"])  # HOG sees the passers-by at 70-78
    assert out.stat().st_size > 1000

    image = str(sample_files()["astronaut.png"])
    result = runner.invoke(
        app,
        ["enrich", image, "--frames", "0", "-m", "opencv-face", "--json", "--config", str(SHIPPED)],
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    frame = body["frames"][0]
    assert [d["label"] for d in frame["detections"]] == ["face"]
    assert 0 <= frame["enrichments"]["quality"]["score"] <= 100  # BRISQUE ships offline
    # Hub models are absent here: each is reported, none silently dropped.
    missing = {e["model"] for e in body["errors"] if e["code"] == "model_unavailable"}
    assert {"weather-classification", "depth-anything-v2-small"} <= missing


# --- issue 12: `zooserve ocr`, --url without a local config, errors on stderr -----------------


def config_with_text_trigger(tmp_path: Path) -> Path:
    """The shipped config (media and jobs under tmp_path) with the whole-frame `text` trigger
    (RapidOCR) it ships once the lead merges it."""
    config = yaml.safe_load(SHIPPED.read_text())
    config.update(media_root=str(tmp_path / "media"), jobs_db=str(tmp_path / "jobs.sqlite3"))
    triggers = config["zoo"]["triggers"]
    if not any(t["name"] == "text" for t in triggers):
        triggers.append({"name": "text", "model": "paddleocr", "scope": "frame"})
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def sign_png(tmp_path: Path) -> Path:
    from PIL import Image

    from tests.pipelines.test_enrich_run import street_sign

    path = tmp_path / "elsewhere" / "sign.png"  # outside media_root: local reads or uploads
    path.parent.mkdir(exist_ok=True)
    Image.fromarray(street_sign()[0]).save(path)
    return path


def test_ocr_reads_a_street_sign_locally_with_boxes_in_frame_pixels(tmp_path: Path) -> None:
    sign = sign_png(tmp_path)
    config = config_with_text_trigger(tmp_path)
    result = runner.invoke(app, ["ocr", str(sign), "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    (frame,) = body["frames"]
    assert frame["frame_number"] == 0 and frame["text"] == "MAIN STREET EXIT 42"
    assert frame["coordinates"] == "frame_pixels"
    x1, y1, x2, y2 = frame["lines"][0]["box"]
    assert 380 <= x1 < x2 <= 640 and 200 <= y1 < y2 <= 320  # on the sign, in frame pixels
    table = runner.invoke(app, ["ocr", str(sign), "--config", str(config)])
    assert table.exit_code == 0 and "EXIT 42" in table.stdout


def test_remote_tasks_need_no_local_config_and_report_errors_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zooserve.api.server import BackgroundServer
    from zooserve.catalog import load_config
    from zooserve.cli.tasks import run_detect
    from zooserve.media.samples import sample_files

    def no_local_config() -> Any:
        raise AssertionError("a --url run must not read a local config")

    sign = sign_png(tmp_path)
    astronaut = sample_files()["astronaut.png"]
    missing = str(tmp_path / "no-such-config.yaml")
    with BackgroundServer(load_config(config_with_text_trigger(tmp_path))) as server:
        run_detect(
            no_local_config, astronaut, None, None, "opencv-face", None, 0.3, server.url, None,
            True, None,
        )  # fmt: skip
        out = capsys.readouterr()
        assert [d["label"] for d in json.loads(out.out)["frames"][0]["detections"]] == ["face"]
        # a server's 4xx: the error on stderr, nothing on stdout, exit code 1
        with pytest.raises(typer.Exit) as exited:
            run_detect(
                no_local_config, astronaut, None, None, "no-such-model", None, 0.3, server.url,
                None, True, None,
            )  # fmt: skip
        out = capsys.readouterr()
        assert exited.value.exit_code == 1 and out.out == ""
        assert "404 model_not_found" in out.err and "no-such-model" in out.err
        # the ocr command through the CLI: --config names nothing, --url serves
        result = runner.invoke(
            app, ["ocr", str(sign), "--url", server.url, "--json", "--config", missing]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["frames"][0]["text"] == "MAIN STREET EXIT 42"


def test_a_local_run_reports_a_missing_config_and_task_errors_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zooserve.cli.common import config_loader
    from zooserve.cli.tasks import run_detect
    from zooserve.media.samples import sample_files

    astronaut = sample_files()["astronaut.png"]
    with pytest.raises(typer.Exit) as exited:
        run_detect(
            config_loader(tmp_path / "nothing.yaml"), astronaut, None, None, None, None, 0.3,
            None, None, True, None,
        )  # fmt: skip
    out = capsys.readouterr()
    assert exited.value.exit_code == 2 and out.out == "" and "nothing.yaml" in out.err
    with pytest.raises(typer.Exit) as exited:
        run_detect(
            config_loader(SHIPPED), astronaut, "5", None, "opencv-face", None, 0.3, None, None,
            True, None,
        )  # fmt: skip
    out = capsys.readouterr()  # frame 5 of an image: a 422, not a traceback
    assert exited.value.exit_code == 1 and out.out == "" and "422" in out.err


def test_zooserve_detect_url_without_a_config_file(tmp_path: Path) -> None:
    from zooserve.api.server import BackgroundServer
    from zooserve.catalog import load_config
    from zooserve.media.samples import sample_files

    astronaut = str(sample_files()["astronaut.png"])
    missing = str(tmp_path / "no-such-config.yaml")
    with BackgroundServer(load_config(config_with_text_trigger(tmp_path))) as server:
        args = [astronaut, "-m", "opencv-face", "--json", "--config", missing]
        result = runner.invoke(app, ["detect", *args, "--url", server.url])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["frames"][0]["detections"][0]["label"] == "face"
        enrich = ["enrich", astronaut, "--triggers", "quality", "--url", server.url, "-c", missing]
        result = runner.invoke(app, enrich)
        assert result.exit_code == 0, result.output
    local = runner.invoke(app, ["detect", *args])  # a local run needs the config: on stderr
    assert local.exit_code == 2 and local.stdout == "" and "no-such-config" in local.stderr


def test_a_bad_config_is_reported_on_stderr_for_every_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from zooserve.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("models: {}\nno_such_key: 1\n")
    for args in (["models", "list"], ["bench", "-m", "x"]):
        result = CliRunner().invoke(app, [*args, "--config", str(bad)])
        assert result.exit_code == 2, (args, result.output)
        assert "no_such_key" in result.stderr and "no_such_key" not in result.stdout
