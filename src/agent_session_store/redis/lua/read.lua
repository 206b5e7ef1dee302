#!lua
-- get_events. KEYS: seq, ev, x of the session.
-- ARGV: after, before (-1: none), limit (-1: none), run id, type, since (µs; '' = none).
-- Candidates come from the sequence range or from the run/type index, never from a scan of
-- the session; only ``since`` (not indexed) is checked row by row.
-- Returns {seq, row, seq, row, ...}.
-- #include prelude

local after, before, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local run, typ, since = ARGV[4], ARGV[5], ARGV[6]
local latest = tonumber(redis.call('GET', KEYS[1]) or '0')
local lo, hi = after + 1, latest
if before >= 0 and before - 1 < hi then hi = before - 1 end
local out = {}
if hi < lo then return out end
local sincen = since ~= '' and tonumber(since) or nil

-- Adds one candidate; true once the page is full.
local function take(seq)
  local blob = redis.call('HGET', KEYS[2], seq)
  if not blob then return false end
  if sincen and tonumber(fields(blob, 5)[5]) < sincen then return false end
  out[#out + 1] = seq
  out[#out + 1] = blob
  return limit >= 0 and #out >= 2 * limit
end

if run ~= '' or typ ~= '' then
  local prefix = run ~= '' and ('r' .. run .. '\0') or ('t' .. typ .. '\0')
  local both = run ~= '' and typ ~= ''
  local lower, upper = '[' .. prefix .. pad(lo), '[' .. prefix .. pad(hi)
  local chunk = 256
  if limit >= 0 and not both and not sincen then chunk = limit end
  while true do
    local page = redis.call('ZRANGEBYLEX', KEYS[3], lower, upper, 'LIMIT', 0, chunk)
    for _, m in ipairs(page) do
      local seq = tonumber(string.sub(m, #prefix + 1))
      if not both or redis.call('ZSCORE', KEYS[3], 't' .. typ .. '\0' .. pad(seq)) then
        if take(seq) then return out end
      end
    end
    if #page < chunk then return out end
    lower = '(' .. page[#page]
  end
end
for seq = lo, hi do
  if take(seq) then return out end
end
return out
