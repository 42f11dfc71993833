-- Which process holds the lease, besides its node name: a random token each Store (each
-- process) draws when it opens. ACQUIRE lets a holder take its own valid lease again only
-- in the same process: a second process started under the same [node] name (a copied
-- configuration, two hosts with one host name) once took the lease from the running active
-- without Force and repeated the device step it had under way. A node restarted after a
-- crash takes its name's lease once it lapses (provider/roles/manager.py).
-- Format of this file: provider/store/schema.py.

-- dialect: both
ALTER TABLE gm_leadership ADD COLUMN instance TEXT NOT NULL DEFAULT '';
