#!lua flags=no-writes
-- list_sessions. KEYS: one list index, the docs hash, the touched hash.
-- ARGV: lex range start prefix ('' = all), offset, limit (-1: none).
-- Returns {docs, touched} (touched: each session's updated_at moved by activity, or false).
-- Ranks come from ZLEXCOUNT (O(log n)), so skipped sessions cost nothing.

local key, prefix, offset, limit = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local first, stop = 0, redis.call('ZCARD', key)
if prefix ~= '' then
  first = redis.call('ZLEXCOUNT', key, '-', '(' .. prefix)
  stop = first + redis.call('ZLEXCOUNT', key, '[' .. prefix, '(' .. prefix .. '\255')
end
local a = first + offset
local b = stop - 1
if limit >= 0 and a + limit - 1 < b then b = a + limit - 1 end
if b < a then return {{}, {}} end
local members = redis.call('ZRANGE', key, a, b)
if #members == 0 then return {{}, {}} end
local ids = {}
for i, m in ipairs(members) do
  -- the session id is what follows the member's last NUL
  local z = 0
  while true do
    local n = string.find(m, '\0', z + 1, true)
    if not n then break end
    z = n
  end
  ids[i] = string.sub(m, z + 1)
end
-- unpack() of more than ~8,000 values overflows Lua's C stack: HMGET 4,000 at a time
local function hmget(hash)
  local out = {}
  for i = 1, #ids, 4000 do
    local part = redis.call('HMGET', hash, unpack(ids, i, math.min(i + 3999, #ids)))
    for j = 1, #part do out[#out + 1] = part[j] end
  end
  return out
end
return {hmget(KEYS[2]), hmget(KEYS[3])}
