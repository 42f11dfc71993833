-- The simulated hardware (provider/drivers/simulator.py): what the enclosures' Onboard
-- Administrators and Virtual Connect Managers would report. It lives in the store so that it
-- survives a crash of the provider exactly as real hardware would, and so that crash tests
-- can count every power action (no bay may be powered on twice by one failover).
-- Format of this file: provider/store/schema.py.

CREATE TABLE sim_bays (
    enclosure      TEXT    NOT NULL,
    bay            TEXT    NOT NULL,
    present        BOOLEAN NOT NULL,
    model          TEXT    NOT NULL DEFAULT '',
    generation     TEXT    NOT NULL DEFAULT '',
    product        TEXT    NOT NULL DEFAULT '',
    power          TEXT    NOT NULL DEFAULT 'off' CHECK (power IN ('on', 'off')),
    profile        TEXT,                       -- the VC profile applied to the bay
    power_ons      INTEGER NOT NULL DEFAULT 0, -- counters of every action ever done
    power_offs     INTEGER NOT NULL DEFAULT 0,
    assigns        INTEGER NOT NULL DEFAULT 0,
    unassigns      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (enclosure, bay)
);

CREATE TABLE sim_os (                          -- the OS image on each profile's boot LUN:
    profile TEXT PRIMARY KEY,                  -- what discovery finds once it runs
    host    TEXT,
    ips     TEXT NOT NULL DEFAULT '[]'
);
