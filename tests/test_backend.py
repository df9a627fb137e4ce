"""The backend switch: NumPy by default, CuPy only when asked, one clear error otherwise."""

import importlib.util

import numpy as np
import pytest

from dsnot_ref import backend
from dsnot_ref.errors import UserError

HAVE_CUPY = importlib.util.find_spec("cupy") is not None


def test_default_is_numpy(monkeypatch):
    monkeypatch.delenv("DSNOT_REF_BACKEND", raising=False)
    assert backend.backend_name() == "numpy"
    assert backend.get_backend() is np


def test_environment_variable_chooses(monkeypatch):
    monkeypatch.setenv("DSNOT_REF_BACKEND", "NumPy")
    assert backend.backend_name() == "numpy"
    # An explicit argument wins over the environment.
    monkeypatch.setenv("DSNOT_REF_BACKEND", "cupy")
    assert backend.backend_name("numpy") == "numpy"


def test_unknown_backend_is_a_user_error():
    with pytest.raises(UserError, match="unknown backend 'jax'"):
        backend.get_backend("jax")


@pytest.mark.skipif(HAVE_CUPY, reason="CuPy is installed here")
def test_cupy_missing_is_one_clear_line():
    with pytest.raises(UserError) as info:
        backend.get_backend("cupy")
    message = str(info.value)
    assert "CuPy is not importable" in message and "\n" not in message


def test_numpy_arrays_stay_on_host():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert backend.array_module(a) is np
    assert backend.to_device(a, np) is a
    assert backend.to_numpy(a) is a
    assert backend.array_module(1.0, [1, 2]) is np
