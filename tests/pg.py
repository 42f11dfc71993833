"""A private PostgreSQL cluster for tests and benchmarks (ha-jobs-style.md A.8).

Finds Debian's server binaries under /usr/lib/postgresql/<version>/bin; when they are
missing and we are root it installs Debian's `postgresql` package, otherwise the tests that
need PostgreSQL are skipped with the reason. The cluster lives in a fresh temp directory,
listens on 127.0.0.1 only, on a free port, with its Unix socket in that directory, and is
stopped with `pg_ctl stop -m immediate` at the end of the session.

PostgreSQL refuses to run as root ("initdb: error: cannot be run as root"), and CI runs as
root: then every server command runs as the `postgres` user through `runuser`, and the
directory is chowned to it. Nothing here needs a terminal.

Use from a conftest (non-root conftests may not declare `pytest_plugins`):

    from tests.pg import postgres_cluster, postgres_url, store_url  # noqa: F401  (fixtures)

`postgres_url` gives each test its own fresh schema on the session's cluster; `store_url`
is parametrized over both backends (SQLite file, fresh PostgreSQL schema).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = [
    "PgCluster",
    "PgUnavailable",
    "find_bindir",
    "postgres_cluster",
    "postgres_url",
    "running_cluster",
    "start_cluster",
    "store_url",
]


class PgUnavailable(Exception):
    """PostgreSQL cannot be run here; the message says why (used as the skip reason)."""


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb and pg_ctl."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        bindir = Path(initdb).parent
        if (bindir / "pg_ctl").is_file():
            with contextlib.suppress(ValueError):
                found.append((int(bindir.parent.name.split(".")[0]), bindir))
    return max(found)[1] if found else None


def _install_with_apt() -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
        done = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900
        )
        if done.returncode != 0:
            raise PgUnavailable(f"{' '.join(argv)} failed: {done.stderr.strip()[-500:]}")


def _ensure_bindir() -> Path:
    bindir = find_bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() != 0:
        raise PgUnavailable(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin and we are "
            "not root, so Debian's postgresql package cannot be installed (run `make test` as root "
            "or install it)"
        )
    _install_with_apt()
    bindir = find_bindir()
    if bindir is None:
        raise PgUnavailable("apt-get installed postgresql but no initdb/pg_ctl was found")
    return bindir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    """A running private cluster; `url(dbname)` gives a libpq URL for the store."""

    bindir: Path
    root: Path
    port: int
    as_postgres: bool
    _dbs: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _shared_db: str | None = None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def superuser(self) -> str:
        return "postgres"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "gm_test") -> str:
        """A fresh empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._dbs)}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def create_schema(self, prefix: str = "gm_test") -> str:
        """A URL whose sessions work in a fresh empty schema of one shared database.

        As isolated as a new database for everything the store does (tables, functions,
        sequences live in the schema), and ~100 times cheaper than CREATE DATABASE.
        """
        import psycopg

        if self._shared_db is None:
            self._shared_db = self.create_database("gm_shared")
        name = f"{prefix}_{os.getpid()}_{next(self._dbs)}"
        with psycopg.connect(self._shared_db, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"'.encode())
        options = urllib.parse.quote(f"-c search_path={name}")
        return f"{self._shared_db}?options={options}"

    def stop(self) -> None:
        _run(
            self,
            [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.datadir), "-m", "immediate"],
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _run(
    cluster: PgCluster, argv: list[str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    if cluster.as_postgres:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    done = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cluster.root,
    )
    if check and done.returncode != 0:
        log = cluster.root / "server.log"
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        raise PgUnavailable(
            f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-800:]}\n{tail}"
        )
    return done


def start_cluster(durable: bool = False) -> PgCluster:
    """Create and start a private cluster; raises PgUnavailable with the reason if it cannot.

    Tests run it without fsync (faster, nothing to keep); `durable=True` keeps PostgreSQL's
    defaults (fsync, synchronous_commit), for benchmarks whose figures must be honest.
    """
    bindir = _ensure_bindir()
    as_postgres = os.geteuid() == 0
    # Not pytest's tmp_path: that lives under a 0700 root-owned directory the postgres user
    # cannot traverse. A directory of its own under the system temp dir can be chowned.
    root = Path(tempfile.mkdtemp(prefix="gm-pg-"))
    if as_postgres:
        try:
            shutil.chown(root, user="postgres", group="postgres")
        except (LookupError, PermissionError) as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise PgUnavailable(f"cannot hand {root} to the postgres user: {exc}") from exc
    cluster = PgCluster(bindir=bindir, root=root, port=0, as_postgres=as_postgres)
    try:
        _run(
            cluster,
            [
                str(bindir / "initdb"),
                "-D",
                str(cluster.datadir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        )
        _start(cluster, durable)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _start(cluster: PgCluster, durable: bool) -> None:
    # A free port can be taken between our probe and the server's bind: retry a few times.
    last: PgUnavailable | None = None
    for _attempt in range(5):
        cluster.port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={cluster.port} "
            f"-c unix_socket_directories={cluster.root} -c max_connections=200"
        )
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        try:
            _run(
                cluster,
                [
                    str(cluster.bindir / "pg_ctl"),
                    "start",
                    "-D",
                    str(cluster.datadir),
                    "-l",
                    str(cluster.root / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                ],
            )
        except PgUnavailable as exc:
            last = exc
            time.sleep(0.2)
            continue
        return
    assert last is not None
    raise last


@contextlib.contextmanager
def running_cluster(durable: bool = False) -> Iterator[PgCluster]:
    """A private cluster for the duration of a `with` block (used by bench/takecontrol.py)."""
    cluster = start_cluster(durable)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PgCluster]:
    try:
        cluster = start_cluster()
    except PgUnavailable as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PgCluster) -> str:
    """A URL to a fresh, empty schema (see `PgCluster.create_schema`) of the private cluster."""
    return postgres_cluster.create_schema()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty store, once per backend: a SQLite file, a fresh PG schema."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/gm.db"
    return str(request.getfixturevalue("postgres_url"))
