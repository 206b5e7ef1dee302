#!lua flags=allow-oom
-- Cluster: compare and delete. Remove a pointer only while it still names this session.
-- KEYS: the pointer. ARGV: the session id.

if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
