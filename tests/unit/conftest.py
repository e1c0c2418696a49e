"""Fixtures of the unit tests that render the Helm chart."""

from __future__ import annotations

import pytest

from .charts import Render, helm_binary, renderer


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


@pytest.fixture(scope="module")
def render(helm: str) -> Render:
    return renderer(helm)
