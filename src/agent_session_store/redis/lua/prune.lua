#!lua
-- prune_session_events, one atomic step in the session's slot: remove the oldest events
-- beyond max_events, first of the given types, then of any unprotected type; never a
-- protected one. The counter is never touched. Candidates come from the type index (t: the
-- head of each type's array; x in a session written before it), so the work grows with what
-- is removed (and the types present), not the session.
-- KEYS: the session's 10 keys, then (single node) the global event id index.
-- ARGV: session id, max events, dry run (1/0), first types (JSON), protected types (JSON).
-- Returns {count, id, row, id, row, ...} (the removed rows; none on a dry run), or {-1}
-- when a delete fences the session (cluster).
-- #include prelude

local sid, keep, dry = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local first, protected = cjson.decode(ARGV[4]), {}
for _, t in ipairs(cjson.decode(ARGV[5])) do protected[t] = true end
if redis.call('GET', KEYS[7]) == 'busy' then return {-1} end
local excess = redis.call('HLEN', KEYS[2]) - keep
if excess <= 0 then return {0} end

local old = old_types(KEYS[4])

-- the oldest n events of each type in types, merged oldest first, at most n in all
local function oldest(types, n)
  local seqs = {}
  for _, t in ipairs(types) do
    if old then
      local found = redis.call('ZRANGEBYLEX', KEYS[4], '[t' .. t .. '\0', '(t' .. t .. '\1',
        'LIMIT', 0, n)
      for _, m in ipairs(found) do seqs[#seqs + 1] = tonumber(string.sub(m, -12)) end
    else
      local start, count = type_header(KEYS[10], t)
      local get = type_entries(KEYS[10], t)
      for i = start, math.min(count, start + n) - 1 do seqs[#seqs + 1] = get(i) end
    end
  end
  table.sort(seqs)
  local out = {}
  for i = 1, math.min(n, #seqs) do out[i] = seqs[i] end
  return out
end

local chosen, is_first = {}, {}
local firsts = {}
for _, t in ipairs(first) do
  is_first[t] = true
  if not protected[t] then firsts[#firsts + 1] = t end
end
local victims = oldest(firsts, excess)
if #victims < excess then
  -- every other unprotected type present: walk the index from one type to the next
  local rest, start = {}, '[t'
  while old do
    local m = redis.call('ZRANGEBYLEX', KEYS[4], start, '(u', 'LIMIT', 0, 1)[1]
    if not m then break end
    local t = string.sub(m, 2, string.find(m, '\0', 2, true) - 1)
    if not protected[t] and not is_first[t] then rest[#rest + 1] = t end
    start = '[t' .. t .. '\1'
  end
  if not old then  -- the directory of types present: x's members T<type>
    for _, m in ipairs(redis.call('ZRANGEBYLEX', KEYS[4], '[T', '(U')) do
      local t = string.sub(m, 2)
      if not protected[t] and not is_first[t] then rest[#rest + 1] = t end
    end
  end
  for _, seq in ipairs(oldest(rest, excess - #victims)) do victims[#victims + 1] = seq end
end
if dry then return {#victims} end

local out = {#victims}
local id_index = KEYS[11]
local dropped = {}  -- type -> how many of its oldest went
for _, seq in ipairs(victims) do
  local blob = redis.call('HGET', KEYS[2], seq)
  if blob then
    local f = fields(blob, 5)
    local p = pad(seq)
    redis.call('HDEL', KEYS[2], seq)
    redis.call('HDEL', KEYS[3], f[1])
    if old then redis.call('ZREM', KEYS[4], 't' .. f[3] .. '\0' .. p)
    else dropped[f[3]] = (dropped[f[3]] or 0) + 1 end
    if f[4] ~= '' then redis.call('ZREM', KEYS[4], 'r' .. string.sub(f[4], 2) .. '\0' .. p) end
    redis.call('ZREM', KEYS[8], fmt(seq))
    if id_index then
      local v = redis.call('HGET', id_index, f[1])
      if v and pointer(v) == sid then redis.call('HDEL', id_index, f[1]) end
    end
    out[#out + 1] = f[1]
    out[#out + 1] = blob
  end
end
-- the victims of each type are the head of its array: move its start past them, dropping
-- the chunks left behind (and the type, once none is left)
for t, n in pairs(dropped) do
  local start, count = type_header(KEYS[10], t)
  local to = math.min(count, start + n)
  local upto = to < count and math.floor(to / TCHUNK) - 1 or math.floor((count - 1) / TCHUNK)
  for k = math.floor(start / TCHUNK), upto do redis.call('HDEL', KEYS[10], t .. '\0' .. fmt(k)) end
  if to < count then
    redis.call('HSET', KEYS[10], t, fmt(to) .. ' ' .. fmt(count))
  else
    redis.call('HDEL', KEYS[10], t)
    redis.call('ZREM', KEYS[4], 'T' .. t)
  end
end
return out
