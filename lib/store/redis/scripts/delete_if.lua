-- Atomic compare-and-delete of a batch of affinity pins, run by the Redis
-- store with EVALSHA (the all-filters-empty case is a plain UNLINK instead).
--
-- KEYS: up to a batch of storage keys; ARGV: provider_id, endpoint_id, key_id
-- filters, each "" for "any" or "=" followed by the value (so that an empty
-- filter value stays distinguishable from "any"). At least one filter is
-- set. A value that is missing, not a string, or not a JSON object never
-- matches. Returns how many went.
local function want(a)
  if a == '' then return nil end
  return string.sub(a, 2)
end
local fp, fe, fk = want(ARGV[1]), want(ARGV[2]), want(ARGV[3])
local n = 0
for i = 1, #KEYS do
  local raw = redis.pcall('GET', KEYS[i])
  if type(raw) == 'string' then
    local ok, v = pcall(cjson.decode, raw)
    if ok and type(v) == 'table'
       and (fp == nil or v.provider_id == fp)
       and (fe == nil or v.endpoint_id == fe)
       and (fk == nil or v.key_id == fk) then
      n = n + redis.call('UNLINK', KEYS[i])
    end
  end
end
return n
