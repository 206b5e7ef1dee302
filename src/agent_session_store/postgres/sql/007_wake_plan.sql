-- Schema version 7: no table change. It re-installs functions.sql, whose {s}.wake (the
-- NOTIFY of every append, flush and import) is PL/pgSQL instead of SQL, so its plan is kept
-- per connection instead of made on every call.
-- Released: never edit; a change is a new numbered file. {s} is the quoted schema name.
SELECT 1;  -- asyncpg cannot run a script of comments only
