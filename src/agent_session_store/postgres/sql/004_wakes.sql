-- Schema version 4: no table change. It re-installs functions.sql, whose appends and imports
-- now NOTIFY what each session got (wakes.py: numbers, types, runs, newest timestamp) beside
-- the bare session id, so a long-poll wakes only the readers the new events can satisfy.
-- Released: never edit; a change is a new numbered file. {s} is the quoted schema name.
SELECT 1;
