import pytest
from pydantic import ValidationError

from magpie.runtime.settings import load_settings


def test_environment_sets_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGPIE_PORT", "6000")
    monkeypatch.setenv("MAGPIE_LOG_JSON", "false")

    settings = load_settings()

    assert settings.port == 6000
    assert settings.log_json is False


def test_unknown_magpie_variable_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGPIE_DATABSE_URL", "postgresql://typo")

    with pytest.raises(ValidationError) as raised:
        load_settings()

    assert "MAGPIE_DATABSE_URL" in str(raised.value)


def test_out_of_range_value_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGPIE_DB_POOL_SIZE", "0")

    with pytest.raises(ValidationError) as raised:
        load_settings()

    assert "db_pool_size" in str(raised.value)


def test_cache_keys_of_different_databases_never_meet() -> None:
    ours = load_settings({"database_url": "postgresql://postgres@127.0.0.1:5432/magpie"})
    bench = load_settings({"database_url": "postgresql://postgres@127.0.0.1:5432/magpie_bench"})
    assert ours.cache_prefix == "magpie:magpie:"
    assert bench.cache_prefix == "magpie:magpie_bench:"
