from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edurank import SAMPLE_CATALOG
from edurank.errors import InputError
from edurank.service.settings import Settings, load_settings


def test_environment_variables_configure_the_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDURANK_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("EDURANK_MAX_TOP_K", "7")
    settings = Settings()
    assert settings.artifacts == tmp_path and settings.max_top_k == 7 and settings.catalog == SAMPLE_CATALOG
    assert settings.default_top_k == 7  # a default left unset follows a lower limit


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


@pytest.mark.parametrize(("variables", "named"), [
    ({"EDURANK_PORT": "99999"}, "EDURANK_PORT"),
    ({"EDURANK_PORT": "-1"}, "EDURANK_PORT"),
    ({"EDURANK_CORS_ORIGINS": "not-json"}, "EDURANK_CORS_ORIGINS"),
    ({"EDURANK_HOST": "999.1.1.1"}, "EDURANK_HOST"),
    ({"EDURANK_HOST": "-bad-.example"}, "EDURANK_HOST"),
    ({"EDURANK_TRUSTED_PROXIES": "10.0.0.1,proxy.local"}, "EDURANK_TRUSTED_PROXIES"),
    ({"EDURANK_DEFAULT_TOP_K": "100", "EDURANK_MAX_TOP_K": "50"}, "EDURANK_DEFAULT_TOP_K (100) is above "
                                                                   "EDURANK_MAX_TOP_K (50)"),
    ({"EDURANK_CANDIDATES": "40", "EDURANK_MAX_CANDIDATES": "30"}, "EDURANK_CANDIDATES (40) is above "
                                                                   "EDURANK_MAX_CANDIDATES (30)"),
    ({"EDURANK_REQUIRE_KEY": "true"}, "EDURANK_REQUIRE_KEY asks for the key but EDURANK_API_KEY is not set"),
    ({"EDURANK_METRICS_ACCESS": "key"}, "EDURANK_METRICS_ACCESS asks for the key but EDURANK_API_KEY is not set"),
])
def test_a_bad_or_contradictory_setting_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch,
                                                              variables: dict[str, str], named: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InputError) as refused:
        load_settings()
    assert str(refused.value).startswith(named) and "\n" not in str(refused.value)


def test_hosts_and_proxies_that_are_well_formed_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    for host in ("0.0.0.0", "::", "::1", "localhost", "api.school.example", "edurank-api", "10.1.2.3"):
        assert load_settings(host=host).host == host
    monkeypatch.setenv("EDURANK_TRUSTED_PROXIES", "10.0.0.5, 172.16.0.0/12,::1")
    assert load_settings().trusted_proxies == ["10.0.0.5", "172.16.0.0/12", "::1"]
    monkeypatch.setenv("EDURANK_TRUSTED_PROXIES", "")
    assert load_settings().trusted_proxies == []
    assert load_settings(port=0, default_top_k=50, candidates=100, require_key=True, api_key="k" * 16).port == 0


@pytest.mark.parametrize("variables", [{"EDURANK_PORT": "99999"}, {"EDURANK_CORS_ORIGINS": "not-json"},
                                       {"EDURANK_HOST": "999.1.1.1"}, {"EDURANK_REQUIRE_KEY": "true"}])
def test_edurank_serve_refuses_a_bad_setting_with_one_line_and_exit_2(variables: dict[str, str]) -> None:
    """Through the real command, as an operator starts it: nothing loads, no traceback."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **variables}
    done = subprocess.run([sys.executable, "-m", "edurank.cli", "serve"], env=env, capture_output=True, text=True,
                          timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("edurank: error: EDURANK_") and next(iter(variables)) in lines[0]
