"""Class mode of the collect app: who may call the API, and who may write which digits.

A page served to a whole class (``mnistgap-collect --host 0.0.0.0 --class-code CODE``) is
reachable by anyone on the network, so:

* every API call carries the class code (header ``X-Class-Code``; missing or wrong: 401);
* the first save of a (group, member) issues a **member token**; every later write for that
  member needs it (header ``X-Member-Token``; missing or wrong: 403), so nobody can overwrite
  another student's digits. Only a SHA-256 of each token is kept, in a JSON file (by default
  ``.member-tokens.json`` in the collection folder, written atomically), so a restarted
  server still knows them and the file gives nobody a usable token;
* the teacher's view (``/api/progress``) needs the teacher key (``X-Teacher-Key``).

Codes, tokens and the key are compared with :func:`hmac.compare_digest` (constant time) and
never logged. Rate limits per client address are :class:`ClassMode`'s strings in the
``limits`` notation (``"10/second"``), applied by slowapi in :mod:`mnistgap.collect.app`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from limits import parse as parse_limit

from mnistgap import atomic

#: The token file's default name, in the collection folder (a dotfile: no digit name).
TOKENS_FILE = ".member-tokens.json"
CODE_HEADER = "X-Class-Code"
TOKEN_HEADER = "X-Member-Token"
TEACHER_HEADER = "X-Teacher-Key"
#: A class code: what a teacher writes on the board (letters, digits, - and _).
CODE_RE = re.compile(r"^[A-Za-z0-9_-]{4,64}$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,128}$")


def same_secret(given: str | None, expected: str) -> bool:
    """``given == expected`` in constant time (False for None or non-ASCII input)."""
    if given is None:
        return False
    try:
        given_bytes = given.encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(given_bytes, expected.encode("ascii"))


def new_secret(nbytes: int = 16) -> str:
    """A random URL-safe secret (a member token or a generated teacher key)."""
    return secrets.token_urlsafe(nbytes)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True)
class ClassMode:
    """The class's code, the teacher key and the per-client limits (``limits`` notation)."""

    code: str
    teacher_key: str
    predict_limit: str = "10/second"
    save_limit: str = "30/minute"
    read_limit: str = "60/minute"
    #: Wrong or missing codes/keys from one address before it gets 429s for a while.
    auth_failure_limit: str = "20/minute"
    tokens_file: Path | None = None

    def __post_init__(self) -> None:
        if not CODE_RE.fullmatch(self.code):
            raise ValueError("class code must be 4-64 characters: letters, digits, '-' or '_'")
        if not _KEY_RE.fullmatch(self.teacher_key):
            raise ValueError("teacher key must be 8-128 characters: letters, digits, '-' or '_'")
        for label in ("predict_limit", "save_limit", "read_limit", "auth_failure_limit"):
            text = getattr(self, label)
            try:
                parse_limit(text)
            except ValueError:
                raise ValueError(
                    f"{label.replace('_', '-')} must look like '10/second' or '30/minute', "
                    f"got {text!r}"
                ) from None


class MemberTokens:
    """The (group, member) -> token-digest table, persisted as JSON; thread-safe.

    :meth:`claim` before a write, :meth:`release` if that write then failed (so a rejected
    first drawing does not lock its member out).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._digests: dict[str, str] = self._load()

    def _load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            members = data["members"]
            if not isinstance(members, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in members.items()
            ):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"{self.path} is not a member-token file (JSON with a 'members' table); "
                "move it away to start with no tokens"
            ) from None
        return dict(members)

    def _save(self) -> None:
        atomic.write_json(self.path, {"version": 1, "members": self._digests})

    @staticmethod
    def _key(group: int, member: int) -> str:
        return f"{group}-{member}"

    def claim(self, group: int, member: int, presented: str | None) -> str | None:
        """Allow a write for (group, member): None when ``presented`` is its token, a new token
        when the member has none yet (recorded at once); :class:`PermissionError` otherwise."""
        key = self._key(group, member)
        with self._lock:
            known = self._digests.get(key)
            if known is None:
                token = new_secret()
                self._digests[key] = _digest(token)
                self._save()
                return token
        if presented is None:
            raise PermissionError(
                f"group {group}, member {member} already has digits saved from another "
                "browser: check your numbers, or ask your teacher"
            )
        if not hmac.compare_digest(_digest(presented).encode(), known.encode()):
            raise PermissionError(f"wrong member token for group {group}, member {member}")
        return None

    def release(self, group: int, member: int, token: str) -> None:
        """Forget the token :meth:`claim` just issued (the write it was for failed)."""
        key = self._key(group, member)
        with self._lock:
            if self._digests.get(key) == _digest(token):
                del self._digests[key]
                self._save()

    def members(self) -> set[tuple[int, int]]:
        """Every (group, member) that holds a token."""
        with self._lock:
            keys = list(self._digests)
        out = set()
        for key in keys:
            g, _, m = key.partition("-")
            if g.isdigit() and m.isdigit():
                out.add((int(g), int(m)))
        return out
