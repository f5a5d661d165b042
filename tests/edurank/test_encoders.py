from __future__ import annotations

from pathlib import Path

import pytest

from edurank.encoders import bundled_model_path, fingerprint, model_path
from edurank.errors import InputError


def test_bundled_model_is_the_default() -> None:
    assert model_path(None) == bundled_model_path() == model_path("bundled")
    assert (bundled_model_path() / "model.safetensors").is_file()


def test_fingerprint_is_stable_and_needs_weights(tmp_path: Path) -> None:
    assert fingerprint(bundled_model_path()) == fingerprint(bundled_model_path())
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match="no weights file"):
        fingerprint(tmp_path)


def test_missing_model_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such directory"):
        model_path(tmp_path / "nope")
