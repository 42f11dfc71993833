"""The portable SQL subset and its translation (pure), and store URL parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from provider.errors import ConfigError
from provider.store import parse_migration, parse_url, translate


def test_named_parameters_become_colon_names_for_sqlite() -> None:
    sql = "SELECT * FROM t WHERE a = %(a)s AND b = %(b_2)s"
    assert translate(sql, "sqlite") == "SELECT * FROM t WHERE a = :a AND b = :b_2"
    assert translate(sql, "postgresql") == sql


def test_escaped_percent_is_a_literal_percent_on_sqlite() -> None:
    assert translate("SELECT 'a%%' LIKE %(p)s", "sqlite") == "SELECT 'a%' LIKE :p"


@pytest.mark.parametrize("sql", ["SELECT %s", "SELECT 5 % 3", "SELECT %(a)d"])
def test_stray_percent_is_refused_on_both_backends(sql: str) -> None:
    for dialect in ("sqlite", "postgresql"):
        with pytest.raises(ValueError, match="named parameters"):
            translate(sql, dialect)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "clause",
    [
        "FOR UPDATE",
        "FOR UPDATE SKIP LOCKED",
        "for share",
        "FOR NO KEY UPDATE NOWAIT",
        "FOR KEY SHARE OF j, r SKIP LOCKED",
    ],
)
def test_row_lock_clauses_are_dropped_for_sqlite_only(clause: str) -> None:
    sql = f"SELECT id FROM j WHERE state = 'queued' ORDER BY id LIMIT 1 {clause}"
    assert translate(sql, "sqlite") == "SELECT id FROM j WHERE state = 'queued' ORDER BY id LIMIT 1"
    assert translate(sql, "postgresql") == sql


def test_row_lock_words_inside_a_string_literal_are_data() -> None:
    sql = "INSERT INTO log VALUES ('wait FOR UPDATE', 'it''s FOR SHARE')"
    assert translate(sql, "sqlite") == sql


def test_sqlite_url_forms(tmp_path: Path) -> None:
    assert parse_url(f"sqlite://{tmp_path}/gm.db").sqlite_path == tmp_path / "gm.db"
    assert parse_url("sqlite:var/gm.db").sqlite_path == Path("var/gm.db")
    assert parse_url("sqlite:///x.db?busy_timeout=250").busy_timeout_ms == 250


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite://host/x.db", "local file"),
        ("sqlite:///x.db?busy_timeout=soon", "integer"),
        ("sqlite:///x.db?journal=off", "unknown parameter"),
        ("mysql://x/y", "scheme"),
    ],
)
def test_bad_store_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_url(url)


def test_postgres_url_gets_timeouts_and_keepalives_and_keeps_our_options_out_of_libpq() -> None:
    parsed = parse_url("postgresql://gm:secret@db.example:5433/gm?statement_timeout=2000")
    assert parsed.statement_timeout_ms == 2000
    assert parsed.idle_in_transaction_timeout_ms == 10_000
    assert "statement_timeout" not in parsed.conninfo
    for option in ("connect_timeout=5", "keepalives=1", "keepalives_idle=5"):
        assert option in parsed.conninfo
    assert "secret" not in parsed.redacted()


def test_migration_file_sections() -> None:
    text = (
        "-- comment for both\n"
        "CREATE TABLE a (x INTEGER);\n"
        "-- dialect: postgresql\n"
        "CREATE INDEX pg_only ON a (x);\n"
        "-- dialect: sqlite\n"
        "CREATE INDEX lite_only ON a (x);\n"
        "-- dialect: both\n"
        "CREATE TABLE b (y TEXT);\n"
    )
    migration = parse_migration("jobs", "0002_queue.sql", text)
    assert (migration.module, migration.version, migration.name) == ("jobs", 2, "queue")
    assert "pg_only" in migration.postgresql and "lite_only" not in migration.postgresql
    assert "lite_only" in migration.sqlite and "pg_only" not in migration.sqlite
    for sql in (migration.sqlite, migration.postgresql):
        assert "CREATE TABLE a" in sql and "CREATE TABLE b" in sql


@pytest.mark.parametrize("name", ["1_x.sql", "0001-x.sql", "0001_X.sql", "0001_x.txt"])
def test_migration_file_names_are_checked(name: str) -> None:
    with pytest.raises(ConfigError, match=r"NNNN_lowercase_words\.sql"):
        parse_migration("jobs", name, "")


def test_postgres_url_options_keep_their_spaces_for_libpq() -> None:
    parsed = parse_url("postgresql://gm@h/gm?options=-c%20search_path%3Dgm")
    assert "options=-c%20search_path%3Dgm" in parsed.conninfo
