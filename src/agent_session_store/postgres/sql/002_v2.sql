-- Schema version 2 (contract v2): a session's updated_at kept by the store, conditional
-- appends, imports, one lock order in every writing function (see functions.sql).
-- Released: never edit; a change is a new numbered file. {s} is the quoted schema name.

-- Appends, run saves and flushes set it (contract C5); NULL (sessions written by version 1)
-- means "the updated_at in the doc". Adding a NULL column rewrites nothing.
ALTER TABLE {s}.sessions ADD COLUMN updated_us bigint;

-- append_events and flush gain a trailing p_expected (DEFAULT NULL, so calls written for
-- version 1 still resolve); the old signatures go, or those calls would be ambiguous
-- (a database made by this code never had them: functions.sql is installed last).
DROP FUNCTION IF EXISTS {s}.append_events(
    text[], text[], text[], text[], bigint[], text[], text[], integer[], text[], text[]);
DROP FUNCTION IF EXISTS {s}.flush(
    text, text, text, bigint, text, text, text, text, bigint, text,
    text[], text[], text[], text[], bigint[], text[], text[], integer[], text[], text[]);
