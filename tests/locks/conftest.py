"""Fixtures over the valid locks in support.lockdata."""

from __future__ import annotations

import copy

import pytest
from support.lockdata import valid_models, valid_nodes


@pytest.fixture
def nodes_data() -> dict:
    return copy.deepcopy(valid_nodes())


@pytest.fixture
def models_data() -> dict:
    return copy.deepcopy(valid_models())
