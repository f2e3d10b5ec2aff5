-- Atomic compare-and-delete of a batch of affinity pins, run by the Redis
-- store with EVALSHA (the all-filters-empty case is a plain UNLINK instead).
--
-- KEYS: up to a batch of storage keys; ARGV: provider_id, endpoint_id, key_id
-- filters, each "" for "any" or "=" followed by the value (so that an empty
-- filter value stays distinguishable from "any"). At least one filter is
-- set. A value that is missing, not a string, or not a JSON object never
-- matches. Returns how many went.
--
-- Cost: one MGET and one UNLINK per chunk, not a GET and an UNLINK per key
-- (each redis.call costs several us: per-key calls were ~14 us of Redis time
-- per pin). A value lacking the quoted bytes of every set filter cannot
-- match and is not decoded; the byte test is exact only without a backslash
-- (a JSON escape could spell the value differently), so such values are
-- always decoded.
local function want(a)
  if a == '' then return nil end
  return string.sub(a, 2)
end
local fp, fe, fk = want(ARGV[1]), want(ARGV[2]), want(ARGV[3])
local function quoted(f)
  if f == nil then return nil end
  return '"' .. f .. '"'
end
local qp, qe, qk = quoted(fp), quoted(fe), quoted(fk)
local find = string.find
local function lacks(raw, q)
  return q ~= nil and not find(raw, q, 1, true)
end
local n = 0
local CHUNK = 1000 -- unpack() and the argument count stay small
for s = 1, #KEYS, CHUNK do
  local e = math.min(s + CHUNK - 1, #KEYS)
  local ks = {}
  for i = s, e do ks[#ks + 1] = KEYS[i] end
  -- MGET answers false for a missing key and for one of another type
  local vals = redis.call('MGET', unpack(ks))
  local del = {}
  for i = 1, #ks do
    local raw = vals[i]
    if type(raw) == 'string'
       and (find(raw, '\\', 1, true) or
            not (lacks(raw, qp) or lacks(raw, qe) or lacks(raw, qk))) then
      local ok, v = pcall(cjson.decode, raw)
      if ok and type(v) == 'table'
         and (fp == nil or v.provider_id == fp)
         and (fe == nil or v.endpoint_id == fe)
         and (fk == nil or v.key_id == fk) then
        del[#del + 1] = ks[i]
      end
    end
  end
  if #del > 0 then
    n = n + redis.call('UNLINK', unpack(del))
  end
end
return n
