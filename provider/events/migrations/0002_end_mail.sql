-- The mail that tells how an event-started failover job ended, owed until sent. The decision
-- that started the job is marked 'owed'; whichever node is active when the job ends mails it
-- and marks it 'sent' (or 'given-up' when the job never ends, or is gone). Kept in the store,
-- not in the memory of the node that started the job, so a restart or a takeover in between
-- loses no end mail (provider/events/listener.py, EndMails). Retention never deletes an owed
-- decision.
-- Format of this file: provider/store/schema.py.

-- dialect: both
ALTER TABLE events_decisions ADD COLUMN end_mail TEXT
    CHECK (end_mail IN ('owed', 'sent', 'given-up'));
CREATE INDEX events_decisions_end_mail ON events_decisions (end_mail);
