"""Password hashing (argon2id) and the password policy.

Hashing is CPU- and memory-bound by design (~50 ms at the defaults): async callers run it in a
worker thread (``asyncio.to_thread``). Passwords are NFKC-normalised first, so the same password
typed on different keyboards or platforms verifies.
"""

from __future__ import annotations

import contextlib
import threading
import unicodedata
from dataclasses import dataclass

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from shared.errors import InvalidInput

# RFC 9106's second recommended profile (argon2-cffi's default): 64 MiB, 3 passes, 4 lanes.
DEFAULT_TIME_COST = 3
DEFAULT_MEMORY_COST_KIB = 64 * 1024
DEFAULT_PARALLELISM = 4
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # bounds the work one request can ask for
PASSPHRASE_CHARS = 20  # from this length a single character class is fine ("four random words")
MIN_DISTINCT_CHARS = 5


@dataclass(frozen=True)
class PasswordVerdict:
    ok: bool
    # Set when the password matched a hash made with outdated parameters: store this instead.
    new_hash: str | None = None


class PasswordHasher:
    def __init__(
        self,
        *,
        time_cost: int = DEFAULT_TIME_COST,
        memory_cost_kib: int = DEFAULT_MEMORY_COST_KIB,
        parallelism: int = DEFAULT_PARALLELISM,
        hash_len: int = 32,
        salt_len: int = 16,
    ) -> None:
        self._argon2 = _Argon2(
            time_cost=time_cost,
            memory_cost=memory_cost_kib,
            parallelism=parallelism,
            hash_len=hash_len,
            salt_len=salt_len,
            type=Type.ID,
        )
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()

    def hash(self, password: str) -> str:
        return self._argon2.hash(_normalise(password))

    def verify(self, password_hash: str | None, password: str) -> PasswordVerdict:
        """Checks ``password`` against ``password_hash`` (argon2 compares in constant time).

        ``password_hash`` None (no such user) still spends one full verification, so a caller
        cannot tell unknown accounts from wrong passwords by the response time."""
        if password_hash is None:
            self.dummy_verify(password)
            return PasswordVerdict(ok=False)
        try:
            self._argon2.verify(password_hash, _normalise(password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return PasswordVerdict(ok=False)
        if self._argon2.check_needs_rehash(password_hash):
            return PasswordVerdict(ok=True, new_hash=self.hash(password))
        return PasswordVerdict(ok=True)

    def dummy_verify(self, password: str) -> None:
        """As long as a real verification; always fails."""
        with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
            self._argon2.verify(self._dummy(), _normalise(password))

    def _dummy(self) -> str:
        with self._dummy_lock:
            if self._dummy_hash is None:
                # Made with this hasher's own parameters so that it costs what a real one does.
                self._dummy_hash = self._argon2.hash("quarry dummy password, never matches")
            return self._dummy_hash


def check_password_policy(password: str, *, email: str | None = None) -> None:
    """Raises ``InvalidInput`` (``weak_password``, the failed rules in ``details``) unless the
    password is at least 12 characters, not a single character class (below 20 characters), not
    a few characters repeated, and does not contain the account's email name."""
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_CHARS:
        problems.append("too_short")
    if len(password) > MAX_PASSWORD_CHARS:
        problems.append("too_long")
    if len(password) < PASSPHRASE_CHARS and _character_classes(password) < 2:
        problems.append("single_character_class")
    if len(set(password)) < MIN_DISTINCT_CHARS:
        problems.append("too_repetitive")
    local_part = (email or "").split("@", 1)[0].lower()
    if len(local_part) >= 3 and local_part in password.lower():
        problems.append("contains_email")
    if problems:
        raise InvalidInput(
            "the password does not meet the policy: " + ", ".join(problems),
            code="weak_password",
            details={"problems": problems, "min_length": MIN_PASSWORD_CHARS},
        )


def _character_classes(password: str) -> int:
    return sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )


def _normalise(password: str) -> str:
    return unicodedata.normalize("NFKC", password)
