#!lua flags=allow-oom
-- Single-node delete_session, one atomic step.
-- KEYS: the session's 8 keys, the event id index, the run id index, the 6 list index keys.
-- ARGV: the session id.
-- #include prelude

local sid = ARGV[1]
for _, id in ipairs(redis.call('HKEYS', KEYS[3])) do
  if redis.call('HGET', KEYS[9], id) == sid then redis.call('HDEL', KEYS[9], id) end
end
for _, run in ipairs(redis.call('HKEYS', KEYS[6])) do
  if redis.call('HGET', KEYS[10], run) == sid then redis.call('HDEL', KEYS[10], run) end
end
index_put({11, 12, 13, 14, 15, 16}, sid, math.huge, nil, nil, false)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[8])
return 'OK'
