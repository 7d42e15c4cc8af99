"""Fixtures shared by every test; the builders behind them live in tests/support (plain functions,
so module-scoped fixtures and other builders can call them too)."""

from collections.abc import Callable

import pytest

from tests.support import builders


@pytest.fixture
def tiny_params() -> Callable[..., dict]:
    """A factory of the project's params with one tiny chest X-ray dataset (see
    builders.one_dataset_params); each call returns a fresh dict to change."""
    return builders.one_dataset_params


@pytest.fixture(scope="session")
def project_params_file() -> dict:
    """The project's params.yaml, as plain data; read once, so tests must not change it."""
    return builders.project_params()
