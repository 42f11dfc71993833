-- The version of the capacity state: every change of a gicap_ table or of the sharing rights
-- adds one in the same transaction (triggers, so a hand edit counts too). A node keeps the
-- state it last read or wrote with its version and reads the tables again only when the
-- version has moved (provider/gicap/service.py); a change first adds one itself, which holds
-- the row until it commits, so capacity changes never interleave (provider/gicap/repo.py).

-- dialect: postgresql
ALTER TABLE gicap_settings ADD COLUMN version bigint NOT NULL DEFAULT 0;

CREATE FUNCTION gicap_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE gicap_settings SET version = version + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER gicap_groups_version AFTER INSERT OR UPDATE OR DELETE ON gicap_groups
    FOR EACH STATEMENT EXECUTE FUNCTION gicap_bump_version();
CREATE TRIGGER gicap_complexes_version AFTER INSERT OR UPDATE OR DELETE ON gicap_complexes
    FOR EACH STATEMENT EXECUTE FUNCTION gicap_bump_version();
CREATE TRIGGER gicap_partitions_version AFTER INSERT OR UPDATE OR DELETE ON gicap_partitions
    FOR EACH STATEMENT EXECUTE FUNCTION gicap_bump_version();
CREATE TRIGGER gicap_seizures_version AFTER INSERT OR UPDATE OR DELETE ON gicap_seizures
    FOR EACH STATEMENT EXECUTE FUNCTION gicap_bump_version();
CREATE TRIGGER gicap_sharing_rights_version AFTER UPDATE OF sharing_rights ON gicap_settings
    FOR EACH STATEMENT EXECUTE FUNCTION gicap_bump_version();

-- dialect: sqlite
ALTER TABLE gicap_settings ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER gicap_groups_version_insert AFTER INSERT ON gicap_groups
BEGIN UPDATE gicap_settings SET version = version + 1; END;
CREATE TRIGGER gicap_groups_version_update AFTER UPDATE ON gicap_groups
BEGIN UPDATE gicap_settings SET version = version + 1; END;
CREATE TRIGGER gicap_groups_version_delete AFTER DELETE ON gicap_groups
BEGIN UPDATE gicap_settings SET version = version + 1; END;

CREATE TRIGGER gicap_complexes_version_insert AFTER INSERT ON gicap_complexes
BEGIN UPDATE gicap_settings SET version = version + 1; END;
CREATE TRIGGER gicap_complexes_version_update AFTER UPDATE ON gicap_complexes
BEGIN UPDATE gicap_settings SET version = version + 1; END;
CREATE TRIGGER gicap_complexes_version_delete AFTER DELETE ON gicap_complexes
BEGIN UPDATE gicap_settings SET version = version + 1; END;

CREATE TRIGGER gicap_partitions_version_insert AFTER INSERT ON gicap_partitions
BEGIN UPDATE gicap_settings SET version = version + 1; END;
CREATE TRIGGER gicap_partitions_version_update AFTER UPDATE ON gicap_partitions
BEGIN UPDATE gicap_settings SET version = version + 1; END;
CREATE TRIGGER gicap_partitions_version_delete AFTER DELETE ON gicap_partitions
BEGIN UPDATE gicap_settings SET version = version + 1; END;

CREATE TRIGGER gicap_seizures_version_insert AFTER INSERT ON gicap_seizures
BEGIN UPDATE gicap_settings SET version = version + 1; END;
CREATE TRIGGER gicap_seizures_version_update AFTER UPDATE ON gicap_seizures
BEGIN UPDATE gicap_settings SET version = version + 1; END;
CREATE TRIGGER gicap_seizures_version_delete AFTER DELETE ON gicap_seizures
BEGIN UPDATE gicap_settings SET version = version + 1; END;

CREATE TRIGGER gicap_sharing_rights_version AFTER UPDATE OF sharing_rights ON gicap_settings
BEGIN UPDATE gicap_settings SET version = version + 1; END;
