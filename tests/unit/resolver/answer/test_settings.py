"""The answering slice's defaults are Config's (a daemon without a config file answers as one
built from the defaults), and the slice is frozen: views keyed to it cannot see it change."""

from __future__ import annotations

import dataclasses

import pytest

from resolver.answer.settings import AnswerSettings
from resolver.config.settings import Config


def test_defaults_are_configs() -> None:
    defaults = AnswerSettings()
    for field in dataclasses.fields(AnswerSettings):
        assert getattr(defaults, field.name) == getattr(Config(), field.name), field.name


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        AnswerSettings().ttl = 1  # type: ignore[misc]
