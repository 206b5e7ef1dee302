#!lua flags=allow-oom
-- Cluster delete_session, step 3 (session slot): drop the data, leave a short-lived 'done'
-- marker. KEYS: the session's 10 keys. ARGV: the marker's TTL in ms. Returns 'OK', or
-- 'LAPSED' (nothing dropped) when the fence expired meanwhile: writers may have written since.

if redis.call('GET', KEYS[7]) ~= 'busy' then return 'LAPSED' end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[8], KEYS[9],
  KEYS[10])
redis.call('SET', KEYS[7], 'done', 'PX', ARGV[1])
return 'OK'
