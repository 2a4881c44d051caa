"""Fixtures for the layer tests; the helpers themselves live in ``_helpers.py``."""
import numpy as np
import pytest

import fastrnn.reference
from _helpers import load_fast

SEED = 20161123  # fixed, so gradient-check tolerances are calibrated on reproducible data


@pytest.fixture
def rng():
    """A fresh, seeded generator per test (no global seeding)."""
    return np.random.default_rng(SEED)


@pytest.fixture(scope="session")
def ref():
    return fastrnn.reference


@pytest.fixture(scope="session")
def fast():
    """``fastrnn.rnn_layers`` (or ``$FASTRNN_TEST_IMPL``): the module under test."""
    return load_fast("fastrnn.rnn_layers")


@pytest.fixture(scope="session")
def fast_layers():
    """``fastrnn.layers`` (older course versions import affine_* from there)."""
    return load_fast("fastrnn.layers")


@pytest.fixture(scope="session", params=["reference", "rnn_layers"])
def any_impl(request):
    """Both the yardstick and the module under test, for checks both must pass."""
    if request.param == "reference":
        return fastrnn.reference
    return load_fast("fastrnn.rnn_layers")
