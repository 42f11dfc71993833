"""Who is calling: HTTP Basic over TCP/TLS, peer credentials over the Unix socket.

The transport asks an `Authenticator` and builds nothing itself, so the same server runs with
the in-memory table the tests use and with the users file of a real installation.

Users file (one user a line, `#` starts a comment; the format of /etc/shadow, whose tools and
habits administrators already have):

    # name:role:password-hash[:groups=dg1,dg2]
    admin:administrator:scrypt$16384$8$1$<salt, base64>$<hash, base64>
    operator:operator:scrypt$16384$8$1$...
    webops:operator:scrypt$16384$8$1$...:groups=dg-web,dg-db

The optional fourth field binds the role to some VC Domain Groups only, as VCEM binds a SIM
user to a role "for a specific VC Domain Group" (reference vcem-domain.md §4.3); it is handed on
in `Principal.domain_groups` (None when absent: every group). Files written before the field
existed are read unchanged.

Passwords are stored as salted scrypt hashes (RFC 7914, `hashlib.scrypt`): a memory-hard
function, so a stolen file resists offline guessing. The role column is handed on in
`Principal.role`; what each role may do is decided by `provider.privileges`, not here.
"""

from __future__ import annotations

import base64
import binascii
import grp
import hashlib
import hmac
import logging
import os
import pwd
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from provider.errors import ConfigError
from provider.http.messages import Principal, Via
from provider.privileges import parse_role

log = logging.getLogger("provider.auth")

__all__ = [
    "Authenticator",
    "FileAuthenticator",
    "InMemoryAuthenticator",
    "LoginThrottle",
    "UserRecord",
    "check_user_name",
    "format_users_line",
    "hash_password",
    "load_users_file",
    "parse_basic_authorization",
    "parse_domain_groups",
    "principal_for_peer",
    "verify_password",
]

# RFC 7914 §2 parameters: N=2**14, r=8, p=1 needs 16 MiB and ~50 ms; the cost an attacker pays
# per guess, and a cost we pay once per connection (the server caches a verified header).
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32


class Authenticator(Protocol):
    """What the transport asks. The server runs `verify_basic` on a thread of its own (scrypt
    is slow by design); `recall_basic` and `identify_peer` run on the event loop and must be
    quick."""

    def verify_basic(self, user: str, password: str) -> Principal | None:
        """The principal for these Basic credentials, or None if they are wrong."""
        ...

    def recall_basic(self, user: str, password: str) -> tuple[bool, Principal | None]:
        """(True, the answer) when these credentials were verified lately and nothing has
        changed since; (False, None) when they must go to `verify_basic`."""
        ...

    def identify_peer(self, uid: int, gid: int) -> Principal | None:
        """The principal for a Unix-socket peer (SO_PEERCRED), or None to refuse it."""
        ...


def hash_password(password: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R) -> str:
    """A salted scrypt hash in the form `scrypt$N$r$p$salt$hash` (salt and hash base64)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, n, r, _SCRYPT_P)
    return "$".join(
        ("scrypt", str(n), str(r), str(_SCRYPT_P), _b64(salt), _b64(digest)),
    )


def verify_password(password: str, stored: str) -> bool:
    """Does `password` match a `hash_password` result? False for any malformed hash."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
        digest = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(digest, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int = _HASH_BYTES) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=256 * 1024 * 1024
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def parse_basic_authorization(value: str) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic <base64>` value, or None if malformed.

    RFC 7617 §2: the credentials are base64 of `user-id ":" password`; the scheme name is
    case-insensitive. UTF-8 is what RFC 7617 §2.1 recommends and what pywbem and curl send.
    """
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep and user else None


def principal_for_peer(
    uid: int,
    gid: int,
    *,
    role: str | None = None,
    domain_groups: tuple[str, ...] | None = None,
) -> Principal:
    """The Unix-socket principal: the local account name and its group names.

    An account unknown to the password database (a container's bare uid) is named `uid=N`.
    """
    user, names = _account(uid, gid)
    return Principal(
        user=user,
        via=Via.UNIX,
        peer=f"uid={uid}",
        uid=uid,
        groups=names,
        role=role,
        domain_groups=domain_groups,
    )


# A peer's account name and groups, looked up at most once a minute per (uid, gid): the role
# is looked at again every second on a keep-alive connection (the users file may change),
# and the password and group databases may be a directory service, slow to ask each time.
_ACCOUNT_SECONDS = 60.0
_ACCOUNT_ENTRIES = 256
_accounts: OrderedDict[tuple[int, int], tuple[float, str, tuple[str, ...]]] = OrderedDict()
_accounts_lock = threading.Lock()


def _account(uid: int, gid: int) -> tuple[str, tuple[str, ...]]:
    now = time.monotonic()
    with _accounts_lock:
        kept = _accounts.get((uid, gid))
        if kept is not None and kept[0] > now:
            return kept[1], kept[2]
    try:
        user = pwd.getpwuid(uid).pw_name
        gids = os.getgrouplist(user, gid)
    except KeyError:
        user = f"uid={uid}"
        gids = [gid]
    names: list[str] = []
    for group_id in dict.fromkeys(gids):
        try:
            names.append(grp.getgrgid(group_id).gr_name)
        except KeyError:
            names.append(str(group_id))
    with _accounts_lock:
        _accounts[(uid, gid)] = (now + _ACCOUNT_SECONDS, user, tuple(names))
        _accounts.move_to_end((uid, gid))
        while len(_accounts) > _ACCOUNT_ENTRIES:
            _accounts.popitem(last=False)
    return user, tuple(names)


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One line of the users file."""

    name: str
    role: str
    password_hash: str
    domain_groups: tuple[str, ...] | None = None  # None: the role holds for every group
    # The role also holds for the local account of this name on the Unix socket (peer
    # credentials, no password). Not by default: an HTTP account and a local login that
    # happen to share a name (`admin`, which `init` creates and many images have as a login)
    # are not the same person.
    local: bool = False


_GROUPS_PREFIX = "groups="
_LOCAL = "local"


def check_user_name(name: str) -> str:
    """A name the users file and HTTP Basic can carry, or ValueError saying what is wrong.

    Not empty, no ':' (the file's field separator, and RFC 7617 forbids it in a Basic
    user-id), no white space or control characters (a line holds one user), no leading '#'
    (a comment), at most 64 characters."""
    if not name:
        raise ValueError("a user name cannot be empty")
    if ":" in name:
        raise ValueError(f"user name {name!r} contains ':'; choose a name without it")
    if any(ch.isspace() or not ch.isprintable() for ch in name):
        raise ValueError(
            f"user name {name!r} contains white space or a control character; "
            "choose a name without them"
        )
    if name.startswith("#"):
        raise ValueError(f"user name {name!r} starts with '#', which marks a comment line")
    if len(name) > 64:
        raise ValueError(f"user name {name[:20]!r}... is longer than 64 characters")
    return name


def format_users_line(record: UserRecord) -> str:
    """The users-file line for a record (without newline); ValueError for a name the file
    could not read back (so a bad name never reaches the file)."""
    check_user_name(record.name)
    line = f"{record.name}:{record.role}:{record.password_hash}"
    if record.domain_groups is not None:
        line += f":{_GROUPS_PREFIX}{','.join(record.domain_groups)}"
    if record.local:
        line += f":{_LOCAL}"
    return line


def parse_domain_groups(text: str) -> tuple[str, ...]:
    """`dg-web,dg-db` as a tuple; ValueError for an empty list, empty or repeated names."""
    names = tuple(name.strip() for name in text.split(","))
    if not names or not all(names):
        raise ValueError("a domain group list needs names separated by commas, none empty")
    if len(set(names)) != len(names):
        raise ValueError("a domain group is listed twice")
    if any(":" in name for name in names):
        raise ValueError("a domain group name cannot contain ':'")
    return names


def load_users_file(path: Path) -> dict[str, UserRecord]:
    """Read a users file; a malformed line raises ConfigError naming the file and line."""
    users: dict[str, UserRecord] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the users file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        at_line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{at_line}: not UTF-8 text (byte offset {exc.start}); save the file as UTF-8"
        ) from None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if not 3 <= len(fields) <= 5 or not all(fields):
            raise ConfigError(
                f"{path}:{number}: expected name:role:scrypt-hash[:groups=...][:local]"
            )
        name, role, password_hash = fields[:3]
        try:
            parse_role(role)  # a misspelt role would otherwise read as no role at all
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: {exc}") from None
        domain_groups: tuple[str, ...] | None = None
        local = False
        for extra in fields[3:]:
            if extra == _LOCAL and not local:
                local = True
            elif extra.startswith(_GROUPS_PREFIX) and domain_groups is None and not local:
                try:
                    domain_groups = parse_domain_groups(extra[len(_GROUPS_PREFIX) :])
                except ValueError as exc:
                    raise ConfigError(f"{path}:{number}: {exc}") from None
            else:
                raise ConfigError(
                    f"{path}:{number}: after the password hash come groups=dg1,dg2 and then "
                    f"local, each at most once; not {extra[:40]!r}"
                )
        if not password_hash.startswith("scrypt$") or password_hash.count("$") != 5:
            raise ConfigError(f"{path}:{number}: the password of {name!r} is not a scrypt hash")
        if name in users:
            raise ConfigError(f"{path}:{number}: user {name!r} is listed twice")
        users[name] = UserRecord(name, role, password_hash, domain_groups, local)
    return users


class InMemoryAuthenticator:
    """Plain-text users for tests: {name: password}, optional {name: role}.

    `peer_users` decides the Unix socket: None accepts every local peer (as a real installation
    does: the socket's owner already chose who can reach it), a set accepts only those uids.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        roles: Mapping[str, str] | None = None,
        *,
        peer_uids: frozenset[int] | None = None,
    ) -> None:
        self._users = dict(users)
        self._roles = dict(roles or {})
        self._peer_uids = peer_uids

    def verify_basic(self, user: str, password: str) -> Principal | None:
        expected = self._users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return Principal(user=user, via=Via.HTTP, peer="", role=self._roles.get(user))

    def recall_basic(self, user: str, password: str) -> tuple[bool, Principal | None]:
        return False, None  # plain-text checks are quick: nothing to remember

    def identify_peer(self, uid: int, gid: int) -> Principal | None:
        if self._peer_uids is not None and uid not in self._peer_uids:
            return None
        principal = principal_for_peer(uid, gid)
        role = self._roles.get(principal.user)
        return principal if role is None else principal_for_peer(uid, gid, role=role)


# Password guessing (`LoginThrottle`): this many new wrong passwords for one user from one
# address (ADDRESS_GUESSES for all users from one address) within the window, and such
# credentials from that address are not checked until the first of them is GUESS_WINDOW old.
GUESSES = 5
ADDRESS_GUESSES = 30
GUESS_WINDOW = 300.0
_GUESS_ENTRIES = 4096
_ANY_USER = ""


class LoginThrottle:
    """Stops password guessing: scrypt alone let one address try ~27 passwords a second.

    Counted per (address, user) and per address: wrong passwords never seen before for that
    user (a script repeating its one stale password is recalled by `_Answers` and counts
    once), kept for `window` seconds, and checks still running, so guesses sent at the same
    time are counted before their answers. At `guesses` for a user (`address_guesses` for the
    address), unknown credentials of that user (of any user) from that address are refused
    unchecked until the oldest failure is `window` old. Credentials verified before are
    still recalled and served, so an administrator whose password was checked lately is not
    locked out by someone guessing at the same name; nor is anyone at another address. At
    most `entries` pairs are kept (the least recently failing go first; the address's own
    count is refreshed by every failure, so made-up names cannot push it out).

    Use: `wait = begin(address, user)`; when 0, check the password, then `end(address,
    user, ok)` whatever happened (ok None: the check did not finish).
    """

    def __init__(
        self,
        guesses: int = GUESSES,
        window: float = GUESS_WINDOW,
        entries: int = _GUESS_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        address_guesses: int = ADDRESS_GUESSES,
    ) -> None:
        self.guesses = guesses
        self.address_guesses = address_guesses
        self.window = window
        self._entries = entries
        self._clock = clock
        self._failed: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._checking: dict[tuple[str, str], int] = {}

    def _recent(self, key: tuple[str, str]) -> list[float]:
        since = self._clock() - self.window
        times = [t for t in self._failed.get(key, ()) if t > since]
        if times:
            self._failed[key] = times
        else:
            self._failed.pop(key, None)
        return times

    def _wait_for(self, key: tuple[str, str], limit: int) -> float:
        times = self._recent(key)
        if len(times) + self._checking.get(key, 0) < limit:
            return 0.0
        if len(times) < limit:
            return 1.0  # checks of its guesses are still running: ask again shortly
        return max(1.0, times[-limit] + self.window - self._clock())

    def wait(self, address: str, user: str) -> float:
        """Seconds until `user`'s unknown credentials from `address` are checked (0: now)."""
        return max(
            self._wait_for((address, user), self.guesses),
            self._wait_for((address, _ANY_USER), self.address_guesses),
        )

    def begin(self, address: str, user: str) -> float:
        """`wait`, and when it is 0 a check of this user's password counted as running."""
        wait = self.wait(address, user)
        if wait == 0.0:
            for key in ((address, user), (address, _ANY_USER)):
                self._checking[key] = self._checking.get(key, 0) + 1
        return wait

    def end(self, address: str, user: str, ok: bool | None) -> bool:
        """The check begun for `user` ended; True when its failure starts a lock."""
        locks = False
        for key, limit in (
            ((address, user), self.guesses),
            ((address, _ANY_USER), self.address_guesses),
        ):
            left = self._checking.get(key, 0) - 1
            if left > 0:
                self._checking[key] = left
            else:
                self._checking.pop(key, None)
            if ok is False:
                times = self._recent(key)
                times.append(self._clock())
                self._failed[key] = times
                self._failed.move_to_end(key)
                locks = locks or len(times) == limit
        if ok is True:
            self._failed.pop((address, user), None)
        while len(self._failed) > self._entries:
            self._failed.popitem(last=False)
        return locks


# How long, and for how many credentials, a verified answer is remembered (`_Answers`).
_RECALL_SECONDS = 300.0
_RECALL_ENTRIES = 1024


class _Answers:
    """The answers given lately to Basic credentials, for the next connection that sends them.

    A keep-alive connection checks its password once; a script that opens a connection per
    call (`wbemexec` from cron, sblim `wbemcli`) would pay a whole scrypt every call, and a
    storm of scripts with a stale password would keep the password thread busy for minutes.
    With this, a repeated pair costs one keyed hash. What is kept is HMAC-SHA256 of the pair
    under a key made at start and never written anywhere: no password, and nothing that can
    be guessed against offline without that key. An answer counts only for the version of the
    users file it was checked against (`version`), for `seconds`, and at most `entries` are
    kept (the least recently used go first), so a flood of made-up pairs holds bounded memory.
    """

    def __init__(
        self,
        entries: int = _RECALL_ENTRIES,
        seconds: float = _RECALL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key = secrets.token_bytes(32)
        self._entries_max = entries
        self._seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: OrderedDict[bytes, tuple[object, float, Principal | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def _digest(self, user: str, password: str) -> bytes:
        # The user's length first: no other (user, password) pair gives the same bytes.
        data = b"%d:%s%s" % (len(user), user.encode("utf-8"), password.encode("utf-8"))
        return hmac.digest(self._key, data, "sha256")

    def recall(self, user: str, password: str, version: object) -> tuple[bool, Principal | None]:
        digest = self._digest(user, password)
        with self._lock:
            kept = self._kept.get(digest)
            if kept is None:
                return False, None
            kept_version, until, answer = kept
            if kept_version != version or self._clock() >= until:
                del self._kept[digest]
                return False, None
            self._kept.move_to_end(digest)
            return True, answer

    def remember(self, user: str, password: str, version: object, answer: Principal | None) -> None:
        digest = self._digest(user, password)
        with self._lock:
            self._kept[digest] = (version, self._clock() + self._seconds, answer)
            self._kept.move_to_end(digest)
            while len(self._kept) > self._entries_max:
                self._kept.popitem(last=False)


_Stamp = tuple[int, int, int, int]


def _stamp(st: os.stat_result) -> _Stamp:
    """Which version of the users file this is. The inode tells apart two versions written
    within one tick of the file system's clock with the same length (a changed password):
    `gm-provider user` writes a new file and renames it over the old one."""
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


class FileAuthenticator:
    """Users from a users file, re-read when the file changes (no restart to add a user).

    A local Unix-socket peer is always accepted; its role is the one the file gives the
    local account name, if it is listed.

    The file must be readable and valid at start (ConfigError names the file and line).
    When a later change leaves it unreadable or malformed (a hand edit gone wrong), the last
    table read stays in force and the error is logged once for that version of the file: a
    typo in one line must not lock every user, local root included, out of a running server.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: _Stamp | None = None
        self._users: dict[str, UserRecord] = {}
        self._reload_if_changed(at_start=True)
        # Checked for unknown users so that a wrong name costs the same time as a wrong password.
        self._decoy = hash_password(secrets.token_hex(8))
        self._answers = _Answers()

    @property
    def users(self) -> Mapping[str, UserRecord]:
        self._reload_if_changed()
        return dict(self._users)

    def _reload_if_changed(self, at_start: bool = False) -> None:
        try:
            st = self._path.stat()
        except OSError as exc:
            error = ConfigError(f"{self._path}: cannot read the users file: {exc.strerror}")
            if at_start:
                raise error from exc
            self._keep_last_table((-1, -1, -1, -1), error)
            return
        stamp = _stamp(st)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                users = load_users_file(self._path)
            except ConfigError as exc:
                if at_start:
                    raise
                self._keep_last_table(stamp, exc)
                return
            self._users = users
            self._stamp = stamp
            if not at_start:
                log.info("%s: re-read, %d users", self._path, len(users))

    def _keep_last_table(self, stamp: _Stamp, error: ConfigError) -> None:
        """Keep the users read last; say so once for this version of the file."""
        if stamp != self._stamp:
            self._stamp = stamp
            log.error(
                "%s; the %d users read before stay in force until the file is corrected",
                error.description,
                len(self._users),
            )

    def verify_basic(self, user: str, password: str) -> Principal | None:
        self._reload_if_changed()
        # The version before the table: a reload sets the table first, so the answer below is
        # never filed under a newer version than the table it was checked against.
        version = self._stamp
        # Checks queued behind the first of a storm of the same pair find its answer here.
        known, answer = self._answers.recall(user, password, version)
        if known:
            return answer
        answer = self._check(self._users, user, password)
        self._answers.remember(user, password, version, answer)
        return answer

    def _check(self, users: Mapping[str, UserRecord], user: str, password: str) -> Principal | None:
        record = users.get(user)
        if record is None:
            verify_password(password, self._decoy)
            return None
        if not verify_password(password, record.password_hash):
            return None
        return Principal(
            user=user,
            via=Via.HTTP,
            peer="",
            role=record.role,
            domain_groups=record.domain_groups,
        )

    def recall_basic(self, user: str, password: str) -> tuple[bool, Principal | None]:
        """The answer `verify_basic` gave these credentials lately, while the file is as it was
        then (a changed password, role or user list makes every earlier answer void)."""
        try:
            st = self._path.stat()
        except OSError:
            return False, None
        return self._answers.recall(user, password, _stamp(st))

    def identify_peer(self, uid: int, gid: int) -> Principal | None:
        self._reload_if_changed()
        principal = principal_for_peer(uid, gid)
        record = self._users.get(principal.user)
        if record is None or not record.local:
            return principal
        return principal_for_peer(uid, gid, role=record.role, domain_groups=record.domain_groups)
