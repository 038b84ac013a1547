"""Reading what analyzers need from stored files: headers, and pixels in modality units (HU for CT).

pydicom decodes compressed pixel data with the pylibjpeg plugins (the thumbnails use the same path).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from noctis_pro.ai.analyzers.base import SeriesFacts
from noctis_pro.contracts import analyses as contracts_analyses

# SOP classes without a pixel matrix: structured reports (88.x), presentation states (11.x), waveforms (9.x),
# encapsulated documents (104.x), RT structures/plans (481.x except RT Dose/Image), key objects (88.59).
NON_IMAGE_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",
    "1.2.840.10008.5.1.4.1.1.11.",
    "1.2.840.10008.5.1.4.1.1.9.",
    "1.2.840.10008.5.1.4.1.1.104.",
    "1.2.840.10008.5.1.4.1.1.481.3",
    "1.2.840.10008.5.1.4.1.1.481.5",
)
NON_IMAGE_MODALITIES = frozenset(contracts_analyses.NON_IMAGE_MODALITIES)


def is_image_series(facts: SeriesFacts) -> bool:
    if facts.modality.upper() in NON_IMAGE_MODALITIES:
        return False
    return any(not uid.startswith(NON_IMAGE_PREFIXES) for uid in facts.sop_class_uids) or not facts.sop_class_uids


def header_read(path: Path) -> Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


def stored_range(ds: Dataset) -> tuple[int, int]:
    """The smallest and largest stored value the pixel format can hold (BitsStored, PixelRepresentation)."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def frame_read(path: Path) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """The dataset, its first frame's stored values, and the same frame in modality units (Rescale applied)."""
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        stored = stored[0]
    if stored.ndim == 3:  # colour: quality is measured on the luminance-like mean of the samples
        stored = stored.mean(axis=2)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    values = stored.astype(np.float64) * slope + intercept
    return ds, stored, values
