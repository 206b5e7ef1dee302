#!lua flags=allow-oom
-- Single node: one batch of a deleted session's id index clean-up (see delete.lua).
-- KEYS: the event id index, the session's live ids hash, the garbage key, the gc hash.
-- ARGV: the session id, the HSCAN cursor, the batch size.
-- Returns {the next cursor ('0': a full pass is done), the number of ids left}.

local sid, n = ARGV[1], tonumber(ARGV[3])
local scan = redis.call('HSCAN', KEYS[3], ARGV[2], 'COUNT', n)
local page = scan[2]
local ids = {}
for i = 1, #page, 2 do ids[#ids + 1] = page[i] end
for _, id in ipairs(ids) do
  -- only pointers still naming the session, for ids a re-created session does not hold
  if redis.call('HGET', KEYS[1], id) == sid and redis.call('HEXISTS', KEYS[2], id) == 0 then
    redis.call('HDEL', KEYS[1], id)
  end
end
if #ids > 0 then redis.call('HDEL', KEYS[3], unpack(ids)) end
local left = redis.call('HLEN', KEYS[3])
if left == 0 then redis.call('HDEL', KEYS[4], KEYS[3]) end
return {scan[1], left}
