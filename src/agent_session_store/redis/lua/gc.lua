#!lua flags=allow-oom
-- Single node: one batch of a deleted session's id index clean-up (see delete.lua).
-- KEYS: the event id index, the session's live ids hash, the garbage key, the gc hash.
-- ARGV: the session id, the HSCAN cursor, the batch size.
-- Returns the next cursor; '0' when the pass is complete and the garbage key is gone. The
-- garbage key is only read until then (deleting from a hash while scanning it makes Redis
-- shrink and rehash it, which costs more than the clean-up itself).

local sid, n = ARGV[1], tonumber(ARGV[3])
local scan = redis.call('HSCAN', KEYS[3], ARGV[2], 'COUNT', n)
local page = scan[2]
for i = 1, #page, 2 do
  local id = page[i]
  -- only pointers still naming the session, for ids a re-created session does not hold
  if redis.call('HGET', KEYS[1], id) == sid and redis.call('HEXISTS', KEYS[2], id) == 0 then
    redis.call('HDEL', KEYS[1], id)
  end
end
if scan[1] == '0' then
  redis.call('UNLINK', KEYS[3])
  redis.call('HDEL', KEYS[4], KEYS[3])
end
return scan[1]
