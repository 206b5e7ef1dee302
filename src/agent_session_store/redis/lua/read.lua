#!lua flags=no-writes
-- get_events. KEYS: seq, ev, x, q of the session.
-- ARGV: after, before (-1: none), limit (-1: none), run id, type, since (µs; '' = none),
--       desc (1: newest first), budget (candidates examined at most in this call).
-- Candidates come from the sequence range or from the run/type index, never from a scan of
-- the session; only ``since`` (not indexed) is checked row by row. A session written by an
-- import with gaps keeps its numbers above ``dense`` (the score of the member 'dense') in q.
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
  if not both or redis.call('ZSCORE', KEYS[3], 't' .. typ .. '\0' .. pad(seq)) then
    local blob = redis.call('HGET', KEYS[2], seq)
    if blob and (since == '' or int_cmp(fields(blob, 5)[5], since) >= 0) then
      out[#out + 1] = seq
      out[#out + 1] = blob
      if limit >= 0 and #out - 1 >= 2 * limit then return true end
    end
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

-- numbers a..b that are all stored (the dense part of a session)
local function walk_range(a, b)
  if desc then
    for seq = b, a, -1 do if visit(seq) then return true end end
  else
    for seq = a, b do if visit(seq) then return true end end
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
  walk_index('t' .. typ .. '\0')
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
