-- Schema version 4 (issue 13): the store's appends and flushes NOTIFY after their commit, in
-- a second transaction of the same call (the procedures append_call and flush_call in
-- functions.sql). A commit that NOTIFYs holds one server-wide lock through its WAL flush, so
-- such commits never share a flush: 64 concurrent appenders ran at about half the speed of
-- the same code without NOTIFY.
-- Released: never edit; a change is a new numbered file. {s} is the quoted schema name.

-- append_events and flush gain a trailing p_notify (DEFAULT true, so calls written for
-- versions 2 and 3 still resolve, and still notify in their own transaction); the old
-- signatures go, or those calls would be ambiguous.
DROP FUNCTION IF EXISTS {s}.append_events(
    text[], text[], text[], text[], bigint[], text[], text[], integer[], text[], text[], bigint);
DROP FUNCTION IF EXISTS {s}.flush(
    text, text, text, bigint, text, text, text, text, bigint, text,
    text[], text[], text[], text[], bigint[], text[], text[], integer[], text[], text[], bigint);
