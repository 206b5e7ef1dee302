#!lua flags=allow-oom
-- Cluster delete_session, step 1 (session slot): fence the session, report what to clean
-- elsewhere. KEYS: the session's 8 keys. ARGV: the fence's TTL in ms.
-- Returns {'BUSY'} or {'OK', event ids, run ids, the version for the index tombstone}.
-- #include prelude

if redis.call('GET', KEYS[7]) == 'busy' then return {'BUSY'} end
redis.call('SET', KEYS[7], 'busy', 'PX', ARGV[1])
local v = math.max(tonumber(redis.call('HGET', KEYS[5], 'v') or '0') + 1, now_us())
return {'OK', redis.call('HKEYS', KEYS[3]), redis.call('HKEYS', KEYS[6]), fmt(v)}
