"""Calibration data for ONNX Runtime's static quantization, read in windows to bound memory.

ONNX Runtime's collectors keep every intermediate output of the batches they are given; fed one
window at a time (its `CalibStridedMinMax` loop), min-max and histogram statistics merge as they
go, so peak memory depends on the window, not on the number of samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onnxruntime.quantization import CalibrationDataReader


class BatchReader(CalibrationDataReader):
    """Feeds a list of input dicts; `set_range` restricts it to one window of them."""

    def __init__(self, batches: Sequence[dict[str, np.ndarray]]) -> None:
        self.batches = list(batches)
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = iter(self.batches[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self.set_range(0, len(self.batches))


def window_size(n_batches: int, target: int) -> int:
    """The largest window <= target that divides the batch count (ONNX Runtime requires it)."""
    for size in range(min(target, n_batches), 0, -1):
        if n_batches % size == 0:
            return size
    return 1
