"""argon2id hashing (cheap parameters: tests share two cores) and the password policy."""

from __future__ import annotations

import pytest

from shared.auth.passwords import PasswordHasher, check_password_policy
from shared.errors import InvalidInput

pytestmark = pytest.mark.unit

PASSWORD = "Tr0ub4dor&3-extra"


def cheap(time_cost: int = 1, memory_cost_kib: int = 8) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost_kib=memory_cost_kib, parallelism=1)


def test_hash_then_verify() -> None:
    hasher = cheap()
    stored = hasher.hash(PASSWORD)

    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert hasher.hash(PASSWORD) != stored  # salted
    assert hasher.verify(stored, PASSWORD).ok
    assert hasher.verify(stored, PASSWORD).new_hash is None
    assert not hasher.verify(stored, PASSWORD + "x").ok
    assert not hasher.verify(stored, "").ok


def test_an_outdated_hash_verifies_and_comes_with_its_replacement() -> None:
    old = cheap(time_cost=1).hash(PASSWORD)
    verdict = cheap(time_cost=2).verify(old, PASSWORD)

    assert verdict.ok
    assert verdict.new_hash is not None
    assert "t=2" in verdict.new_hash
    assert cheap(time_cost=2).verify(verdict.new_hash, PASSWORD).new_hash is None
    assert cheap(time_cost=2).verify(old, "wrong password").new_hash is None


def test_unknown_users_and_broken_hashes_fail_without_raising() -> None:
    hasher = cheap()
    assert not hasher.verify(None, PASSWORD).ok  # spends a dummy verification
    assert not hasher.verify("not a hash", PASSWORD).ok
    assert not hasher.verify("$argon2id$v=19$m=8,t=1,p=1$broken", PASSWORD).ok
    hasher.dummy_verify(PASSWORD)


def test_equivalent_unicode_forms_verify() -> None:
    hasher = cheap()
    stored = hasher.hash("Caf\u00e9-au-lait-2024")  # precomposed é
    assert hasher.verify(stored, "Cafe\u0301-au-lait-2024").ok  # e + combining accent


@pytest.mark.parametrize(
    "password",
    [
        "Correct-Horse-42",
        "correct horse battery staple",  # a passphrase
        "averyveryverylongpassphrase",  # one class, but 20+ characters
        "Zx9!Qw2@Ab7#",
    ],
)
def test_acceptable_passwords(password: str) -> None:
    check_password_policy(password, email="alice@example.com")


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("Sh0rt-pw", "too_short"),
        ("x" * 1025 + "A1", "too_long"),
        ("onlylowercase", "single_character_class"),
        ("123456789012", "single_character_class"),
        ("aAaAaAaAaAaA", "too_repetitive"),
        ("Alice-Secret-99", "contains_email"),
    ],
)
def test_weak_passwords_are_refused(password: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_password_policy(password, email="alice@example.com")
    assert refused.value.code == "weak_password"
    assert problem in refused.value.details["problems"]
