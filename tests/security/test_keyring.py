import json

import pytest

from security.keyring import (
    KeyringError,
    add_primary_key,
    generate_keyring_document,
    parse_keyring,
    write_keyring_file,
)


def test_a_generated_keyring_parses_with_256_bit_keys():
    keyring = parse_keyring(json.dumps(generate_keyring_document("test")), expected_environment="test")
    assert len(keyring.primary_kek) == 32 and len(keyring.primary_pepper) == 32
    assert keyring.primary_kek != keyring.primary_pepper


def test_a_keyring_of_another_environment_is_refused():
    document = json.dumps(generate_keyring_document("prod"))
    with pytest.raises(KeyringError, match="'prod' environment"):
        parse_keyring(document, expected_environment="dev")


def test_the_repr_shows_no_key_material():
    document = generate_keyring_document("test")
    keyring = parse_keyring(json.dumps(document), expected_environment="test")
    for encoded in [*document["keks"].values(), *document["peppers"].values()]:
        assert encoded not in repr(keyring)
    assert "keks" not in repr(keyring)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format=2), "format"),
        (lambda d: d.update(keks={}), "no keks"),
        (lambda d: d["keks"].update({d["primary_kek"]: "c2hvcnQ="}), "not 256 bits"),
        (lambda d: d["peppers"].update({d["primary_pepper"]: "not base64!"}), "not base64"),
        (lambda d: d.update(primary_kek="kek_missing"), "no master key"),
        (lambda d: d.update(primary_pepper="pep_missing"), "no pepper"),
    ],
)
def test_a_malformed_keyring_is_refused_with_a_reason(mutate, message):
    document = generate_keyring_document("test")
    mutate(document)
    with pytest.raises(KeyringError, match=message):
        parse_keyring(json.dumps(document), expected_environment="test")
    with pytest.raises(KeyringError, match="not valid JSON"):
        parse_keyring("{", expected_environment="test")


def test_a_new_primary_kek_keeps_the_old_one_for_unwrapping():
    document = generate_keyring_document("test")
    old = document["primary_kek"]
    new = add_primary_key(document, "kek")
    keyring = parse_keyring(json.dumps(document), expected_environment="test")
    assert keyring.primary_kek_id == new != old
    assert len(keyring.kek(old)) == 32


def test_concurrent_first_starts_share_the_keyring_created_first(tmp_path):
    path = tmp_path / "keyring.json"
    first, second = generate_keyring_document("dev"), generate_keyring_document("dev")
    write_keyring_file(path, first, replace=False)
    write_keyring_file(path, second, replace=False)
    assert json.loads(path.read_text()) == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["keyring.json"]
