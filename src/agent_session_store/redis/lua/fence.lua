#!lua flags=allow-oom
-- Cluster delete_session, between its steps (session slot): renew the delete's fence while
-- it is still up. KEYS: the fence. ARGV: its TTL in ms. Returns 1, or 0 when it lapsed.

if redis.call('GET', KEYS[1]) ~= 'busy' then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
