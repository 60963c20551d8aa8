"""Fixtures shared by the test modules."""

import numpy as np
import pytest


@pytest.fixture
def rgb():
    """A small random RGB image, (20, 30, 3) uint8."""
    return np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
