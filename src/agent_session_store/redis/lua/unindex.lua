#!lua flags=allow-oom
-- Cluster delete_session: take the session out of the list_sessions index (index slot),
-- leaving a tombstone with the version. Allowed when the server is out of memory: a full
-- store must stay possible to empty. KEYS: the 6 list index keys. ARGV: session id, version.
-- #include prelude

return index_put({1, 2, 3, 4, 5, 6}, ARGV[1], tonumber(ARGV[2]), nil, nil, true) and 1 or 0
