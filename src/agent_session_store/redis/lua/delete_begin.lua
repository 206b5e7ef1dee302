#!lua flags=allow-oom
-- Cluster delete_session, step 1 (session slot): fence the session, report its runs (the
-- caller then walks its ids hash with HSCAN, a batch at a time, to drop their claims).
-- KEYS: the session's 10 keys. ARGV: the fence's TTL in ms.
-- Returns {'BUSY'} or {'OK', run ids, the version for the index tombstone}.
-- #include prelude

if redis.call('GET', KEYS[7]) == 'busy' then return {'BUSY'} end
redis.call('SET', KEYS[7], 'busy', 'PX', ARGV[1])
local v = math.max(tonumber(redis.call('HGET', KEYS[5], 'v') or '0') + 1, now_us())
return {'OK', redis.call('HKEYS', KEYS[6]), fmt(v)}
