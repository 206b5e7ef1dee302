#!lua flags=allow-oom
-- Single-node delete_session, one atomic step whose work does not grow with the session:
-- the session's keys are unlinked (freed in the background), its runs, run pointers and
-- list entry removed. Its ev hash becomes a garbage key listed in the gc hash (the rows
-- name the event ids); gc.lua then removes the id index entries of those events, a batch
-- per call, and unlinks it. A session of at most one batch is cleaned up here instead. Until then those entries dangle,
-- which every write treats as a free id (write.lua, holder).
-- KEYS: the session's 10 keys, the event id index, the run id index, the 6 list index keys,
-- the gc hash, the garbage key to create, the touched hash. ARGV: the session id, the
-- clean-up batch size (a session of at most that many events is cleaned up here).
-- Returns the number of ids left to clean.
-- #include prelude

local sid = ARGV[1]
for _, run in ipairs(redis.call('HKEYS', KEYS[6])) do
  if redis.call('HGET', KEYS[12], run) == sid then redis.call('HDEL', KEYS[12], run) end
end
index_put({13, 14, 15, 16, 17, 18}, sid, math.huge, nil, nil, false)
redis.call('HDEL', KEYS[21], sid)
local left = redis.call('HLEN', KEYS[2])
if left > 0 and left <= (tonumber(ARGV[2]) or 0) then
  -- no more than one clean-up batch: done here, and the rows are freed at once
  for _, row in ipairs(redis.call('HVALS', KEYS[2])) do
    local id = fields(row, 1)[1]
    local v = redis.call('HGET', KEYS[11], id)
    if v and pointer(v) == sid then redis.call('HDEL', KEYS[11], id) end
  end
  left = 0
  redis.call('UNLINK', KEYS[2])
elseif left > 0 then
  redis.call('RENAME', KEYS[2], KEYS[20])
  redis.call('HSET', KEYS[19], KEYS[20], sid)
end
redis.call('UNLINK', KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[8], KEYS[9], KEYS[10])
return left
