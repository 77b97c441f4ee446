"""`zooserve models pull`: only the listed files, where the loader finds them, verified, and
every failure reported with its reason while the other models still run.

This machine has no network, so the hub is faked: `FakeHub` serves repos from a temp dir and
writes downloads into a real hub-cache layout (snapshots/<commit>/..., refs/main), which the
catalog then finds offline exactly as it finds a real download.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import httpx2
import huggingface_hub.constants
import onnx
import pytest
import yaml
from huggingface_hub import errors
from onnx import TensorProto, helper
from typer.testing import CliRunner

from zooserve.catalog import load_config
from zooserve.cli import app, pull
from zooserve.families import sources

SHIPPED = Path(__file__).parents[1] / "config" / "models.yaml"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def safetensors_bytes() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\x00\x00\x80\x3f"


def onnx_bytes() -> bytes:
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return helper.make_model(graph).SerializeToString()


def pt_bytes() -> bytes:
    return b"\x80\x02}q\x00."  # a pickled empty dict: what a legacy torch.save starts with


def _response(status: int) -> httpx2.Response:
    return httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/x"))


class FakeHub:
    """Repos under `root/<org>/<name>/`, ultralytics assets under `root/assets/<release>/`."""

    def __init__(self, root: Path, cache: Path) -> None:
        self.root, self.cache = root, cache
        self.downloaded: list[tuple[str, str]] = []
        self.gated: set[str] = set()
        self.unreachable: set[str] = set()

    def add(self, repo: str, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            path = self.root / repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def _check(self, repo: str) -> None:
        if repo in self.gated:
            raise errors.GatedRepoError("Access to model is restricted", response=_response(403))
        if repo in self.unreachable:
            raise ConnectionError("[Errno 101] Network is unreachable")
        if not (self.root / repo).is_dir():
            raise errors.RepositoryNotFoundError("not found", response=_response(401))

    def list_files(self, repo: str, revision: str | None) -> list[str]:
        self._check(repo)
        base = self.root / repo
        return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())

    def download(self, repo: str, filename: str, revision: str | None) -> str:
        self._check(repo)
        source = self.root / repo / filename
        if not source.is_file():
            raise errors.RemoteEntryNotFoundError("Entry not found", response=_response(404))
        folder = self.cache / f"models--{repo.replace('/', '--')}"
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / (revision or "main")).write_text(COMMIT)
        target = folder / "snapshots" / COMMIT / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        self.downloaded.append((repo, filename))
        return str(target)

    def fetch_url(self, url: str, dest: Path) -> None:
        release, name = url.split("/")[-2:]
        source = self.root / "assets" / release / name
        if not source.is_file():
            raise errors.HfHubHTTPError("404 Not Found", response=_response(404))
        dest.write_bytes(source.read_bytes())

    def hub(self) -> pull.Hub:
        return pull.Hub(
            download=self.download, list_files=self.list_files, fetch_url=self.fetch_url
        )


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the suite runs offline; the hub is fake
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    hub = FakeHub(tmp_path / "hub", cache)
    hub.add(
        "org/owl",
        {
            "config.json": b'{"model_type": "owlv2"}',
            "preprocessor_config.json": b"{}",
            "model.safetensors": safetensors_bytes(),
            "pytorch_model.bin": pt_bytes(),  # the alternative not taken
            "tf_model.h5": b"big and unneeded",
            "extra/config.json": b"{}",  # `*.json` stays at the top level
        },
    )
    hub.add("org/threat", {"weights/best.pt": pt_bytes(), "runs/last.pt": pt_bytes()})
    hub.add("org/reid", {"osnet.onnx": onnx_bytes()})
    hub.add("org/pets", {"config.json": b"{}", "model.safetensors": safetensors_bytes()})
    hub.add("assets/v8.4.0", {"yolo26n.pt": pt_bytes()})
    return hub


def write_config(tmp_path: Path, models: dict) -> Path:
    data = {"device": "cpu", "model_zoo_path": "zoo", "models": models}
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


GOOD_MODELS = {
    "owl": {
        "model_id": "org/owl",
        "family": "owlv2",
        "source": {"repo": "org/owl", "files": ["*.json", "model.safetensors|pytorch_model.bin"]},
    },
    "threat": {
        "model_id": "{MODEL_ZOO_PATH}/threat.pt",
        "family": "yolo",
        "framework": "ultralytics",
        "source": {"repo": "org/threat", "files": ["weights/best.pt"]},
    },
    "reid": {
        "model_id": "{MODEL_ZOO_PATH}/osnet_x0_25.onnx",
        "family": "osnet",
        "source": {"repo": "org/reid", "files": ["osnet.onnx"]},
    },
    "pets": {
        "model_id": "{MODEL_ZOO_PATH}/pets",
        "family": "resnet_classifier",
        "source": {"repo": "org/pets", "files": ["config.json", "model.safetensors"]},
    },
    "yolo26": {
        "model_id": "{MODEL_ZOO_PATH}/yolo26n.pt",
        "family": "yolo",
        "framework": "ultralytics",
        "source": {"ultralytics": "yolo26n.pt"},
    },
    "face": {"model_id": "opencv:haarcascade_frontalface_default.xml", "family": "opencv_cascade"},
}


def test_pull_takes_only_the_listed_files_and_the_loader_finds_them(
    tmp_path: Path, fake: FakeHub
) -> None:
    config = load_config(write_config(tmp_path, GOOD_MODELS))
    for name in ("owl", "threat", "reid", "pets", "yolo26"):
        assert sources.locate(config, config.models[name]) is None, name
    results = pull.pull_models(config, list(config.models), fake.hub(), say=lambda _: None)
    assert {r.model: r.status for r in results} == {
        "owl": "pulled",
        "threat": "pulled",
        "reid": "pulled",
        "pets": "pulled",
        "yolo26": "pulled",
        "face": "builtin",
    }
    assert sorted(fake.downloaded) == [
        ("org/owl", "config.json"),
        ("org/owl", "model.safetensors"),
        ("org/owl", "preprocessor_config.json"),
        ("org/pets", "config.json"),
        ("org/pets", "model.safetensors"),
        ("org/reid", "osnet.onnx"),
        ("org/threat", "weights/best.pt"),
    ]
    zoo = tmp_path / "zoo"
    # Where each loader looks: the hub snapshot by model_id, the renamed file, the directory.
    snapshot = sources.locate(config, config.models["owl"])
    assert snapshot is not None and snapshot.endswith(COMMIT)
    assert sorted(p.name for p in Path(snapshot).iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    assert sources.infer_family(config, config.models["owl"], snapshot) == "owlv2"
    assert sources.locate(config, config.models["threat"]) == str(zoo / "threat.pt")
    assert sources.locate(config, config.models["reid"]) == str(zoo / "osnet_x0_25.onnx")
    assert sorted(p.name for p in (zoo / "pets").iterdir()) == ["config.json", "model.safetensors"]
    assert (zoo / "yolo26n.pt").read_bytes() == pt_bytes()
    assert not list(zoo.rglob("*.partial"))


def test_every_failure_is_reported_with_its_reason_and_the_run_goes_on(
    tmp_path: Path, fake: FakeHub
) -> None:
    fake.add("org/gated", {"config.json": b"{}", "model.safetensors": safetensors_bytes()})
    fake.gated.add("org/gated")
    fake.add("org/far", {"model.safetensors": safetensors_bytes()})
    fake.unreachable.add("org/far")
    fake.add("org/broken", {"config.json": b"{}", "model.safetensors": b"\xff" * 16})
    fake.add("org/html", {"model.pt": b"<!DOCTYPE html><html>rate limited</html>"})
    models = {
        "gated": {"model_id": "org/gated", "source": {"repo": "org/gated", "files": ["*.json"]}},
        "missing": {
            "model_id": "{MODEL_ZOO_PATH}/m.pt",
            "source": {"repo": "org/threat", "files": ["weights/nope.pt"]},
        },
        "far": {
            "model_id": "org/far",
            "source": {"repo": "org/far", "files": ["model.safetensors"]},
        },
        "broken": {
            "model_id": "org/broken",
            "source": {"repo": "org/broken", "files": ["config.json", "model.safetensors"]},
        },
        "html": {
            "model_id": "{MODEL_ZOO_PATH}/h.pt",
            "source": {"repo": "org/html", "files": ["model.pt"]},
        },
        "checksum": {
            "model_id": "{MODEL_ZOO_PATH}/c.pt",
            "source": {
                "repo": "org/threat",
                "files": ["weights/best.pt"],
                "sha256": {"weights/best.pt": "0" * 64},
            },
        },
        "no-asset": {"model_id": "{MODEL_ZOO_PATH}/x.pt", "source": {"ultralytics": "yolo99n.pt"}},
        "private": {
            "model_id": "{MODEL_ZOO_PATH}/p.pt",
            "source": {"repo": "org/ghost", "files": ["a.pt"]},
        },
        "unpublished": {
            "model_id": "{MODEL_ZOO_PATH}/u.pt",
            "source": {"none": "weights are API-only"},
        },
        "threat": GOOD_MODELS["threat"],  # last: it still runs after every failure above
    }
    config = load_config(write_config(tmp_path, models))
    results = {
        r.model: r for r in pull.pull_models(config, list(models), fake.hub(), lambda _: None)
    }
    reasons = {name: str(r.reason) for name, r in results.items()}
    assert reasons["gated"] == (
        "gated: accept the licence at https://huggingface.co/org/gated and set HF_TOKEN (HTTP 403)"
    )
    assert reasons["missing"] == "weights/nope.pt not found in org/threat (404)"
    assert reasons["far"].startswith("network error fetching model.safetensors")
    assert "safetensors header" in reasons["broken"]
    assert reasons["html"] == "model.pt: an HTML page, not weights"
    assert "sha256" in reasons["checksum"] and "is not the expected" in reasons["checksum"]
    assert "HTTP 404" in reasons["no-asset"] and "yolo99n.pt" in reasons["no-asset"]
    assert "org/ghost not found, or private (HTTP 401)" in reasons["private"]
    assert results["unpublished"].status == "no_source"
    assert reasons["unpublished"] == "no public source: weights are API-only"
    assert results["threat"].status == "pulled"
    assert {r.status for n, r in results.items() if n not in ("threat", "unpublished")} == {
        "failed"
    }
    # Nothing half-written is left where a loader would take it for the model.
    for name in ("missing", "html", "checksum", "no-asset", "private"):
        assert sources.locate(config, config.models[name]) is None, name


def test_cli_pull_prints_a_row_per_model_and_exits_1_on_failure(
    tmp_path: Path, fake: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = {
        **GOOD_MODELS,
        "ghost": {
            "model_id": "{MODEL_ZOO_PATH}/g.pt",
            "source": {"repo": "org/ghost", "files": ["g.pt"]},
        },
    }
    path = write_config(tmp_path, models)
    monkeypatch.setattr(pull, "real_hub", fake.hub)
    runner = CliRunner()
    result = runner.invoke(
        app, ["models", "pull", "--all", "--config", str(path)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1, result.output
    assert "org/ghost not found" in result.output and "not fetched: ghost" in result.output
    result = runner.invoke(
        app, ["models", "pull", "threat", "--config", str(path)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "pulled" in result.output and str(tmp_path / "zoo" / "threat.pt") in result.output


def test_pull_selects_by_name_task_and_zoo_and_brings_a_trackers_detector() -> None:
    config = load_config(SHIPPED)
    assert pull.select_models(config, "yolo11n-seg-bytetrack", False, None) == [
        "yolo11n-seg-bytetrack",
        "yolo11n-seg",
    ]
    summarization = pull.select_models(config, None, False, "video_summarization")
    assert "gemma-3-27b" in summarization and "gemma-3-27b-w4a16" in summarization
    assert "fashion-clip" in pull.select_models(config, None, False, "zoo")
    assert pull.select_models(config, None, True, None) == list(config.models)
    with pytest.raises(pull.PullError, match="unknown task 'dancing'"):
        pull.select_models(config, None, False, "dancing")


def test_offline_machine_refuses_clearly_without_touching_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network() -> pull.Hub:
        raise AssertionError("the hub must not be reached while offline")

    monkeypatch.setattr(pull, "real_hub", no_network)
    result = CliRunner().invoke(app, ["models", "pull", "--all", "--config", str(SHIPPED)])
    output = " ".join(result.output.split())  # rich wraps at the terminal width
    assert result.exit_code == 1
    assert "HF_HUB_OFFLINE=1: refusing to download" in output
    assert "Unset HF_HUB_OFFLINE" in output


def test_verify_file_reads_headers(tmp_path: Path) -> None:
    def check(name: str, data: bytes, sha256: str | None = None) -> str | None:
        path = tmp_path / name
        path.write_bytes(data)
        return pull.verify_file(path, sha256)

    assert check("a.safetensors", safetensors_bytes()) is None
    assert "out of range" in str(check("b.safetensors", safetensors_bytes()[:20]))
    assert check("a.onnx", onnx_bytes()) is None
    assert "ONNX does not parse" in str(check("b.onnx", b"\x08\x07garbage"))
    assert check("a.pt", pt_bytes()) is None
    assert "not a PyTorch checkpoint" in str(check("b.pt", b"PK?? not a zip"))
    assert check("empty.bin", b"") == "empty file"
    lfs = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n"
    assert check("lfs.safetensors", lfs) == "a Git LFS pointer, not the file itself"
    assert check("c.json", b"{not json") == "not valid JSON"
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # sha256("test")
    assert check("d.txt", b"test", digest) is None
    assert "is not the expected" in str(check("e.txt", b"tent", digest))
    assert onnx.__version__  # the ONNX parse above used the real parser
