import pytest
from django.core.exceptions import ImproperlyConfigured

from bluespark.environment import env_bool, env_choice, env_int, env_list, env_str


def test_a_required_variable_that_is_missing_names_itself(monkeypatch):
    monkeypatch.delenv("BLUESPARK_PROBE", raising=False)
    with pytest.raises(ImproperlyConfigured, match="BLUESPARK_PROBE is required"):
        env_str("BLUESPARK_PROBE")


def test_values_are_parsed_strictly(monkeypatch):
    monkeypatch.setenv("BLUESPARK_PROBE", "yes")
    assert env_bool("BLUESPARK_PROBE", False) is True
    monkeypatch.setenv("BLUESPARK_PROBE", "maybe")
    with pytest.raises(ImproperlyConfigured, match="not a boolean"):
        env_bool("BLUESPARK_PROBE", False)
    monkeypatch.setenv("BLUESPARK_PROBE", "12x")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("BLUESPARK_PROBE", 1)
    monkeypatch.setenv("BLUESPARK_PROBE", "0")
    with pytest.raises(ImproperlyConfigured, match="below its minimum"):
        env_int("BLUESPARK_PROBE", 1, minimum=1)
    monkeypatch.setenv("BLUESPARK_PROBE", "staging")
    with pytest.raises(ImproperlyConfigured, match="must be one of"):
        env_choice("BLUESPARK_PROBE", ("dev", "prod"), "dev")
    monkeypatch.setenv("BLUESPARK_PROBE", " a, b ,,c ")
    assert env_list("BLUESPARK_PROBE") == ["a", "b", "c"]


def test_a_secret_file_is_read_and_cannot_be_combined_with_the_variable(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.delenv("BLUESPARK_PROBE", raising=False)
    monkeypatch.setenv("BLUESPARK_PROBE_FILE", str(secret))
    assert env_str("BLUESPARK_PROBE") == "s3cret"
    monkeypatch.setenv("BLUESPARK_PROBE", "other")
    with pytest.raises(ImproperlyConfigured, match="not both"):
        env_str("BLUESPARK_PROBE")
    monkeypatch.delenv("BLUESPARK_PROBE")
    monkeypatch.setenv("BLUESPARK_PROBE_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        env_str("BLUESPARK_PROBE")
