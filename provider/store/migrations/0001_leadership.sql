-- The store's own tables: the lease row of ha-jobs-style.md A.7.1, what each node last
-- reported, and an audit log written by fenced transactions (who did what, under which epoch).
-- Format: provider/store/schema.py.

-- dialect: postgresql
-- gm_now(): the database clock as Unix seconds, so that domain SQL can stamp rows the same
-- way on both engines (SQLite registers a function of the same name on every connection).
CREATE FUNCTION gm_now() RETURNS double precision
    LANGUAGE sql VOLATILE
    AS $$ SELECT extract(epoch FROM clock_timestamp())::double precision $$;

CREATE TABLE gm_leadership (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),  -- exactly one row
    epoch       bigint      NOT NULL,     -- fencing token, only ever increases
    holder      text        NOT NULL,     -- node name of the active ('' = nobody yet)
    lease_until timestamptz NOT NULL      -- on the DATABASE clock only
);
INSERT INTO gm_leadership VALUES (true, 0, '', '-infinity');

CREATE TABLE gm_nodes (
    node      text        PRIMARY KEY,
    role      text        NOT NULL,      -- as the node reported it: active / standby / stopped
    epoch     bigint      NOT NULL,      -- the epoch it held or last saw
    last_seen timestamptz NOT NULL
);

CREATE TABLE gm_audit (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    epoch bigint           NOT NULL,      -- the epoch whose fence this write passed
    node  text             NOT NULL,
    what  text             NOT NULL,
    at    double precision NOT NULL       -- gm_now()
);

-- dialect: sqlite
CREATE TABLE gm_leadership (
    singleton   INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
    epoch       INTEGER NOT NULL,
    holder      TEXT    NOT NULL,
    lease_until REAL    NOT NULL          -- Unix seconds on this host's wall clock (gm_now())
);
INSERT INTO gm_leadership VALUES (1, 0, '', -1e999);

CREATE TABLE gm_nodes (
    node      TEXT    PRIMARY KEY,
    role      TEXT    NOT NULL,
    epoch     INTEGER NOT NULL,
    last_seen REAL    NOT NULL
);

CREATE TABLE gm_audit (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    epoch INTEGER NOT NULL,
    node  TEXT    NOT NULL,
    what  TEXT    NOT NULL,
    at    REAL    NOT NULL
);
