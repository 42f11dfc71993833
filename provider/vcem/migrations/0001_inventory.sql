-- VCEM inventory as the Group Manager knows it (provider/vcem/inventory.py seeds it once;
-- afterwards these rows are the truth). Format of this file: provider/store/schema.py.
-- Booleans are BOOLEAN (SQLite stores 0/1); lists are JSON text; times are Unix seconds.

CREATE TABLE vcem_groups (
    name                   TEXT    PRIMARY KEY,
    description            TEXT    NOT NULL DEFAULT '',
    same_generation        BOOLEAN NOT NULL DEFAULT FALSE,  -- spare policy (SPEC 4.1)
    auto_failover_disabled BOOLEAN NOT NULL DEFAULT FALSE,  -- kill switch for event rules
    maintenance            BOOLEAN NOT NULL DEFAULT FALSE,  -- setMaintenance start..complete
    maintenance_owner      TEXT,
    maintenance_since      DOUBLE PRECISION,
    locked_by_job          BIGINT                           -- set by a job's lock step
);

CREATE TABLE vcem_domains (
    name       TEXT    PRIMARY KEY,
    group_name TEXT    NOT NULL REFERENCES vcem_groups (name),
    state      TEXT    NOT NULL
               CHECK (state IN ('managed', 'unmanaged', 'unlicensed', 'incompatible', 'maintenance'))
);

CREATE TABLE vcem_enclosures (
    name     TEXT    PRIMARY KEY,
    domain   TEXT    NOT NULL REFERENCES vcem_domains (name),
    kind     TEXT    NOT NULL,
    position INTEGER NOT NULL          -- 0 = the domain's base enclosure (enc0)
);

CREATE TABLE vcem_bays (
    enclosure      TEXT    NOT NULL REFERENCES vcem_enclosures (name),
    bay            TEXT    NOT NULL,
    bay_order      INTEGER NOT NULL,   -- physical order: 1, 1A, 1B, 2, ..., 16
    is_spare       BOOLEAN NOT NULL DEFAULT FALSE,
    full_height    BOOLEAN NOT NULL DEFAULT FALSE,
    covered_by     TEXT,               -- bay whose full-height blade covers this one
    server_present BOOLEAN NOT NULL DEFAULT FALSE,   -- last known (device reads update it)
    model          TEXT    NOT NULL DEFAULT '',
    generation     TEXT    NOT NULL DEFAULT '',
    product        TEXT    NOT NULL DEFAULT '',
    power_state    TEXT    NOT NULL DEFAULT 'unknown' CHECK (power_state IN ('on', 'off', 'unknown')),
    host           TEXT,               -- discovery data (lower case)
    ips            TEXT    NOT NULL DEFAULT '[]',
    PRIMARY KEY (enclosure, bay)
);
CREATE INDEX vcem_bays_host ON vcem_bays (host);

CREATE TABLE vcem_bay_ips (            -- one row per IP: failover by any IP address
    ip        TEXT PRIMARY KEY,
    enclosure TEXT NOT NULL,
    bay       TEXT NOT NULL
);

CREATE TABLE vcem_profiles (
    name          TEXT    PRIMARY KEY,
    group_name    TEXT    NOT NULL REFERENCES vcem_groups (name),
    enclosure     TEXT,
    bay           TEXT,
    boot_from_san BOOLEAN NOT NULL DEFAULT FALSE,
    macs          TEXT    NOT NULL DEFAULT '[]',
    wwns          TEXT    NOT NULL DEFAULT '[]',
    serial_number TEXT    NOT NULL DEFAULT '',
    uuid          TEXT    NOT NULL DEFAULT '',
    UNIQUE (enclosure, bay)            -- one profile per bay
);

CREATE TABLE vcem_seed (               -- one row once the inventory has seeded the store
    singleton BOOLEAN PRIMARY KEY,
    source    TEXT             NOT NULL,
    seeded_at DOUBLE PRECISION NOT NULL
);
