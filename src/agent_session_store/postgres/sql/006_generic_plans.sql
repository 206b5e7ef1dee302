-- Schema version 6: no table change. It re-installs functions.sql, whose append path
-- (append_events, flush, save_run) keeps one generic plan per connection, pinned to index
-- probes, instead of planning every statement on every call (see functions.sql).
-- Released: never edit; a change is a new numbered file. {s} is the quoted schema name.
SELECT 1;  -- asyncpg cannot run a script of comments only
