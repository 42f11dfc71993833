-- GiCAP state (the "GiCAP database" of reference gicap-domain.md §1.1, §8): capacity groups,
-- complexes (members), their nPars, and rights seizures. Times are Unix seconds; host lists,
-- vPars and cells are JSON text (read and written whole by provider/gicap/repo.py).

-- dialect: postgresql
CREATE TABLE gicap_settings (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    sharing_rights integer NOT NULL CHECK (sharing_rights >= 0),
    seeded_from    text    NOT NULL      -- the inventory file the state was seeded from
);

CREATE TABLE gicap_groups (
    name                    text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 127),
    description             text    NOT NULL,
    free_rights             integer NOT NULL CHECK (free_rights >= 0),
    ticap_minutes           bigint  NOT NULL CHECK (ticap_minutes >= 0),
    ticap_reminder_at       double precision,
    out_of_compliance_since double precision
);

CREATE TABLE gicap_complexes (
    name                text PRIMARY KEY,
    owned_rights        integer NOT NULL CHECK (owned_rights >= 0),
    rights              integer NOT NULL CHECK (rights >= 0),
    ticap_minutes       bigint  NOT NULL,          -- negative: debited without TiCAP
    ticap_charged_until double precision,
    member              text UNIQUE CHECK (length(member) BETWEEN 1 AND 127),
    group_name          text REFERENCES gicap_groups (name),
    member_hosts        text    NOT NULL,          -- JSON list
    reachable           boolean,
    CHECK ((member IS NULL) = (group_name IS NULL))
);

CREATE TABLE gicap_partitions (
    complex  text    NOT NULL REFERENCES gicap_complexes (name) ON DELETE CASCADE,
    name     text    NOT NULL,
    position integer NOT NULL,
    hosts    text    NOT NULL,                     -- JSON list
    vpars    text    NOT NULL,                     -- JSON object: vPar -> hosts
    cells    text    NOT NULL,                     -- JSON list of {name, cores, active}
    intended integer NOT NULL CHECK (intended >= 0),
    actual   integer NOT NULL CHECK (actual >= 0),
    PRIMARY KEY (complex, name)
);

CREATE TABLE gicap_seizures (
    id                text PRIMARY KEY,
    complex           text    NOT NULL REFERENCES gicap_complexes (name),
    npar              text    NOT NULL,          -- nPar name, or (unassigned)
    host              text    NOT NULL,
    cores             integer NOT NULL CHECK (cores >= 0),
    deferred          boolean NOT NULL,
    seized_at         double precision NOT NULL,
    expires_at        double precision,
    state             text    NOT NULL
        CHECK (state IN ('pending', 'loan', 'permanent', 'reverted', 'restored')),
    intended_before   integer NOT NULL,
    rebooted          boolean NOT NULL,
    all_cores_assumed boolean NOT NULL,
    expiry_warned     boolean NOT NULL
);

-- dialect: sqlite
CREATE TABLE gicap_settings (
    singleton      INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
    sharing_rights INTEGER NOT NULL CHECK (sharing_rights >= 0),
    seeded_from    TEXT    NOT NULL
);

CREATE TABLE gicap_groups (
    name                    TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 127),
    description             TEXT    NOT NULL,
    free_rights             INTEGER NOT NULL CHECK (free_rights >= 0),
    ticap_minutes           INTEGER NOT NULL CHECK (ticap_minutes >= 0),
    ticap_reminder_at       REAL,
    out_of_compliance_since REAL
);

CREATE TABLE gicap_complexes (
    name                TEXT PRIMARY KEY,
    owned_rights        INTEGER NOT NULL CHECK (owned_rights >= 0),
    rights              INTEGER NOT NULL CHECK (rights >= 0),
    ticap_minutes       INTEGER NOT NULL,
    ticap_charged_until REAL,
    member              TEXT UNIQUE CHECK (length(member) BETWEEN 1 AND 127),
    group_name          TEXT REFERENCES gicap_groups (name),
    member_hosts        TEXT    NOT NULL,
    reachable           INTEGER,
    CHECK ((member IS NULL) = (group_name IS NULL))
);

CREATE TABLE gicap_partitions (
    complex  TEXT    NOT NULL REFERENCES gicap_complexes (name) ON DELETE CASCADE,
    name     TEXT    NOT NULL,
    position INTEGER NOT NULL,
    hosts    TEXT    NOT NULL,
    vpars    TEXT    NOT NULL,
    cells    TEXT    NOT NULL,
    intended INTEGER NOT NULL CHECK (intended >= 0),
    actual   INTEGER NOT NULL CHECK (actual >= 0),
    PRIMARY KEY (complex, name)
);

CREATE TABLE gicap_seizures (
    id                TEXT PRIMARY KEY,
    complex           TEXT    NOT NULL REFERENCES gicap_complexes (name),
    npar              TEXT    NOT NULL,
    host              TEXT    NOT NULL,
    cores             INTEGER NOT NULL CHECK (cores >= 0),
    deferred          INTEGER NOT NULL,
    seized_at         REAL    NOT NULL,
    expires_at        REAL,
    state             TEXT    NOT NULL
        CHECK (state IN ('pending', 'loan', 'permanent', 'reverted', 'restored')),
    intended_before   INTEGER NOT NULL,
    rebooted          INTEGER NOT NULL,
    all_cores_assumed INTEGER NOT NULL,
    expiry_warned     INTEGER NOT NULL
);
