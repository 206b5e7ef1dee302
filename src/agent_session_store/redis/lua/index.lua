#!lua
-- Cluster: the list_sessions index step (index slot). KEYS: the 6 list index keys.
-- ARGV: session id, version, doc ('' = remove), the four index members.
-- Returns 1, or 0 when a newer version was already indexed.
-- #include prelude

local doc = ARGV[3] ~= '' and ARGV[3] or nil
local members = doc and {ARGV[4], ARGV[5], ARGV[6], ARGV[7]} or nil
return index_put({1, 2, 3, 4, 5, 6}, ARGV[1], tonumber(ARGV[2]), doc, members, true) and 1 or 0
