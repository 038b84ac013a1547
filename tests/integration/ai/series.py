"""Synthetic CT series for the AI tests: known air HU and noise, known geometry, optional gaps."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from tests.conftest import make_dataset

AIR_HU = -1000.0
TISSUE_HU = 40.0
NOISE_SD = 10.0


def ct_pixels(*, rows: int = 64, columns: int = 64, seed: int = 0, uniform: float | None = None) -> bytes:
    """Stored values (HU + 1024, int16): air with Gaussian noise around a disc of soft tissue, or one uniform HU."""
    if uniform is not None:
        return np.full((rows, columns), uniform + 1024, dtype=np.int16).tobytes()
    rng = np.random.default_rng(seed)
    hu = AIR_HU + rng.normal(0, NOISE_SD, (rows, columns))
    yy, xx = np.mgrid[0:rows, 0:columns]
    disc = (yy - rows / 2) ** 2 + (xx - columns / 2) ** 2 < (min(rows, columns) * 0.35) ** 2
    hu[disc] = TISSUE_HU + rng.normal(0, NOISE_SD, int(disc.sum()))
    return (hu + 1024).round().astype(np.int16).tobytes()


def ct_slice(
    *, study_uid: str, series_uid: str, number: int, z: float, uniform: float | None = None, **attrs: Any
) -> Dataset:
    return make_dataset(
        study_uid=study_uid,
        series_uid=series_uid,
        instance_number=number,
        ImagePositionPatient=[-100.0, -100.0, z],
        SliceLocation=z,
        PixelData=ct_pixels(seed=number, uniform=uniform),
        **attrs,
    )
