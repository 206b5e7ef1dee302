#!lua flags=allow-oom
-- Single node: one batch of a deleted session's id index clean-up (see delete.lua).
-- KEYS: the event id index, the session's live ids hash, the garbage key, the gc hash, the
-- session's live ev hash. The garbage key is the deleted session's ev hash (seq -> row), or
-- its ids hash (id -> seq) when an older version of this code made the delete.
-- ARGV: the session id, the HSCAN cursor, the batch size.
-- Returns the next cursor; '0' when the pass is complete and the garbage key is gone. The
-- garbage key is only read until then (deleting from a hash while scanning it makes Redis
-- shrink and rehash it, which costs more than the clean-up itself).

-- #include prelude

local sid, n = ARGV[1], tonumber(ARGV[3])
local scan = redis.call('HSCAN', KEYS[3], ARGV[2], 'COUNT', n)
local page = scan[2]
for i = 1, #page, 2 do
  local id = page[i]
  if string.find(page[i + 1], '\0', 1, true) then id = fields(page[i + 1], 1)[1] end
  -- only pointers still naming the session, for ids a re-created session does not hold
  local v = redis.call('HGET', KEYS[1], id)
  if v then
    local owner, seq = pointer(v)
    if owner == sid then
      local live
      if seq then live = row_is(KEYS[5], seq, id)
      else live = redis.call('HEXISTS', KEYS[2], id) == 1 end
      if not live then redis.call('HDEL', KEYS[1], id) end
    end
  end
end
if scan[1] == '0' then
  redis.call('UNLINK', KEYS[3])
  redis.call('HDEL', KEYS[4], KEYS[3])
end
return scan[1]
