-- The mail that tells the administrator of a decision (an alert, a failover started or
-- refused, an unknown system...), owed until sent, as the end mail of 0002 is. The decision
-- is recorded with its mail as written then ('owed'); the active node sends it and marks it
-- 'sent', or 'given-up' after six hours of failed attempts. Before, the mail was sent once
-- from memory: one that the SMTP server could not take was lost, and the cool-down then kept
-- every repeat of the event silent. NULL: nothing owed (an outcome that is not mailed, or a
-- decision from before this migration). Retention never deletes an owed decision.
-- Format of this file: provider/store/schema.py.

-- dialect: both
ALTER TABLE events_decisions ADD COLUMN mail TEXT
    CHECK (mail IN ('owed', 'sent', 'given-up'));
ALTER TABLE events_decisions ADD COLUMN mail_subject TEXT;
ALTER TABLE events_decisions ADD COLUMN mail_body TEXT;
CREATE INDEX events_decisions_mail ON events_decisions (mail);
