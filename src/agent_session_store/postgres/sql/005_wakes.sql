-- Schema version 5: no table change. It re-installs functions.sql, whose appends and imports
-- now NOTIFY what each session got (wakes.py: numbers, types, runs, newest timestamp) beside
-- the bare session id, so a long-poll wakes only the readers the new events can satisfy.
-- The helper that sent only the id (version 4) is replaced by {s}.wake.
-- Released: never edit; a change is a new numbered file. {s} is the quoted schema name.
DROP FUNCTION IF EXISTS {s}.notify(text[]);
