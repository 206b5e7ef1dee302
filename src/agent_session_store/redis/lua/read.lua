#!lua flags=no-writes
-- get_events. KEYS: seq, ev, x, q, z, t of the session.
-- ARGV: after, before (-1: none), limit (-1: none), run id, type, since (µs; '' = none),
--       desc (1: newest first), budget (candidates examined at most in this call).
-- Candidates come from the sequence range, the run index (x) or the type index (t; x in a
-- session written before it), never from a scan of the session; with both a run and a type,
-- the run's candidates whose row has another type are skipped. ``since`` is checked row by
-- row, but a block of ZONE numbers whose latest timestamp (the zone map z) is older is
-- skipped whole. A session written by an import with gaps keeps its numbers above ``dense``
-- (the score of the member 'dense') in q.
-- Returns {cursor, seq, row, seq, row, ...}: cursor '' when the answer is complete, else the
-- last number examined when the budget ran out (the caller continues from there).
-- #include prelude

local after, before, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local run, typ, since = ARGV[4], ARGV[5], ARGV[6]
local desc, budget = ARGV[7] == '1', tonumber(ARGV[8])
local latest = tonumber(redis.call('GET', KEYS[1]) or '0')
local lo, hi = after + 1, latest
if before >= 0 and before - 1 < hi then hi = before - 1 end
local out = {''}
if hi < lo then return out end
local both = run ~= '' and typ ~= ''
local probes = 0

-- Examines one candidate; true when this call is done (page full, or budget spent).
local function visit(seq)
  probes = probes + 1
  local blob = redis.call('HGET', KEYS[2], seq)
  if blob and both then  -- the row's third field is its type
    local z = string.find(blob, '\0', string.find(blob, '\0', 1, true) + 1, true)
    if string.sub(blob, z + 1, z + #typ + 1) ~= typ .. '\0' then blob = nil end
  end
  if blob and since ~= '' and int_cmp(fields(blob, 5)[5], since) < 0 then blob = nil end
  if blob then
    out[#out + 1] = seq
    out[#out + 1] = blob
    if limit >= 0 and #out - 1 >= 2 * limit then return true end
  end
  if probes >= budget then out[1] = fmt(seq); return true end
  return false
end

local function chunk()
  local n = 256
  if limit >= 0 and not both and since == '' then n = limit end
  return math.max(1, math.min(n, budget - probes))
end

-- the run or type index: members <r|t><value>\0<seq:012>, lex order = number order
local function walk_index(prefix)
  local lower, upper = '[' .. prefix .. pad(lo), '[' .. prefix .. pad(hi)
  while true do
    local n = chunk()
    local page
    if desc then
      page = redis.call('ZREVRANGEBYLEX', KEYS[3], upper, lower, 'LIMIT', 0, n)
    else
      page = redis.call('ZRANGEBYLEX', KEYS[3], lower, upper, 'LIMIT', 0, n)
    end
    for _, m in ipairs(page) do
      if visit(tonumber(string.sub(m, #prefix + 1))) then return end
    end
    if #page < n then return end
    if desc then upper = '(' .. page[#page] else lower = '(' .. page[#page] end
  end
end

-- the type index t: one type's numbers in order, found by binary search
local function walk_types(start, count)
  if count <= start then return end
  local get = type_entries(KEYS[6], typ)
  if desc then
    local i = count - 1  -- (the newest: no search)
    if get(i) > hi then i = first_above(get, start, count - 1, hi) - 1 end
    while i >= start do
      local seq = get(i)
      if seq < lo or visit(seq) then return end
      i = i - 1
    end
  else
    local i = start  -- (the oldest: no search)
    if get(i) < lo then i = first_above(get, start, count - 1, lo - 1) end
    while i < count do
      local seq = get(i)
      if seq > hi or visit(seq) then return end
      i = i + 1
    end
  end
end

-- With since: is the block of seq all older? (a block missing from the map: unknown, no)
local function older(seq)
  if since == '' then return false end
  local top = redis.call('HGET', KEYS[5], math.floor(seq / ZONE))
  return top ~= false and int_cmp(top, since) < 0
end

-- Moves past an older block, counting it as one candidate; returns the next number or nil.
local function skip(seq, step)
  probes = probes + 1
  local z = math.floor(seq / ZONE)
  local nxt = step > 0 and (z + 1) * ZONE or z * ZONE - 1
  if probes >= budget then out[1] = fmt(step > 0 and nxt - 1 or nxt + 1); return nil end
  return nxt
end

-- numbers a..b that are all stored (the dense part of a session), without since: every
-- number is a candidate, so their rows come in one HMGET per run of numbers (as many as the
-- page and the budget still take: the same candidates visit would examine one by one)
local function fetch_range(a, b)
  local step = desc and -1 or 1
  local seq = desc and b or a
  while (desc and seq >= a) or (not desc and seq <= b) do
    local n = math.min(budget - probes, desc and seq - a + 1 or b - seq + 1, 1000)
    if limit >= 0 then n = math.min(n, limit - (#out - 1) / 2) end
    n = math.max(1, n)
    local nums = {}
    for i = 1, n do nums[i] = seq + (i - 1) * step end
    local got = redis.call('HMGET', KEYS[2], unpack(nums))
    for i = 1, n do
      probes = probes + 1
      if got[i] then
        out[#out + 1] = nums[i]
        out[#out + 1] = got[i]
        if limit >= 0 and #out - 1 >= 2 * limit then return true end
      end
      if probes >= budget then out[1] = fmt(nums[i]); return true end
    end
    seq = seq + n * step
  end
  return false
end

-- numbers a..b that are all stored (the dense part of a session)
local function walk_range(a, b)
  if since == '' then return fetch_range(a, b) end
  local step = desc and -1 or 1
  local seq = desc and b or a
  while (desc and seq >= a) or (not desc and seq <= b) do
    local entering = seq == (desc and b or a) or seq % ZONE == (desc and ZONE - 1 or 0)
    if entering and older(seq) then
      seq = skip(seq, step)
      if seq == nil then return true end
    else
      if visit(seq) then return true end
      seq = seq + step
    end
  end
  return false
end

-- numbers a..b of the sparse part, from q
local function walk_sparse(a, b)
  while a <= b do
    local n = chunk()
    local page
    if desc then
      page = redis.call('ZREVRANGEBYSCORE', KEYS[4], b, a, 'LIMIT', 0, n)
    else
      page = redis.call('ZRANGEBYSCORE', KEYS[4], a, b, 'LIMIT', 0, n)
    end
    for _, m in ipairs(page) do
      if visit(tonumber(m)) then return true end
    end
    if #page < n then return false end
    if desc then b = tonumber(page[#page]) - 1 else a = tonumber(page[#page]) + 1 end
  end
  return false
end

if run ~= '' then
  walk_index('r' .. run .. '\0')
elseif typ ~= '' then
  local start, count, known = type_header(KEYS[6], typ)
  if not known and old_types(KEYS[3]) then walk_index('t' .. typ .. '\0')
  else walk_types(start, count) end
else
  local dense = tonumber(redis.call('ZSCORE', KEYS[4], 'dense') or latest)
  local top = math.min(hi, dense)
  if desc then
    if not walk_sparse(math.max(lo, dense + 1), hi) then walk_range(lo, top) end
  else
    if not walk_range(lo, top) then walk_sparse(math.max(lo, dense + 1), hi) end
  end
end
return out
