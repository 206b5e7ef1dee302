#!lua
-- Cluster: the list_sessions index step of a session save (index slot).
-- KEYS: the 6 list index keys. ARGV: session id, version, doc, the four index members.
-- Returns 1, or 0 when a newer version was already indexed.
-- #include prelude

local members = {ARGV[4], ARGV[5], ARGV[6], ARGV[7]}
return index_put({1, 2, 3, 4, 5, 6}, ARGV[1], tonumber(ARGV[2]), ARGV[3], members, true) and 1 or 0
