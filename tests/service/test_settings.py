from __future__ import annotations

from pathlib import Path

import pytest

from edurank import SAMPLE_CATALOG
from edurank.service.settings import Settings


def test_environment_variables_configure_the_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDURANK_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("EDURANK_MAX_TOP_K", "7")
    settings = Settings()
    assert settings.artifacts == tmp_path and settings.max_top_k == 7 and settings.catalog == SAMPLE_CATALOG


def test_artifact_defaults_follow_the_layout(tmp_path: Path) -> None:
    settings = Settings(artifacts=tmp_path)
    assert settings.artifact(None, "reranker") is None  # nothing trained: serve retrieval only
    (tmp_path / "reranker" / "v1").mkdir(parents=True)
    (tmp_path / "reranker" / "v1" / "manifest.json").write_text("{}")
    assert settings.artifact(None, "reranker") == tmp_path / "reranker"
    assert settings.artifact("elsewhere", "reranker") == Path("elsewhere")


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("EDURANK_BATCH_MAX_ESSAYS", "0")
    with pytest.raises(ValidationError, match="batch_max_essays"):
        Settings()


def test_an_empty_key_means_none_and_a_short_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("EDURANK_API_KEY", "")  # compose passes unset variables through as empty
    assert Settings().api_key is None
    monkeypatch.setenv("EDURANK_API_KEY", "short")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings()
    monkeypatch.setenv("EDURANK_API_KEY", "k" * 16)
    assert Settings().api_key is not None and "k" * 16 not in repr(Settings())
