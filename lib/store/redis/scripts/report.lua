-- Atomic failure report on one affinity pin (pin lifecycle), run by the
-- Redis store with EVALSHA for acache_affinity_report()'s transient and
-- terminal outcomes.
--
-- KEYS[1] storage key; ARGV: provider_id, endpoint_id, key_id (the target
-- that failed), now (%.17g), max_failures (>= 1; 1 drops at once).
-- Returns {result, failures}: result 0 = no live pin to that target (absent,
-- unreadable, expired, or pinned elsewhere: nothing changed), 1 = kept with
-- the new count, 2 = deleted (the count reached max_failures).
--
-- The count lives in the pin's value as "failure_count" (Aether reads its
-- fields by name and ignores it; its set_affinity writes a value without
-- it, as our touch does: a success clears it). Only that field's bytes are
-- rewritten, so created_at and expire_at keep the text their writer gave
-- them, and the key's remaining TTL is kept (a failure does not extend a
-- pin). A pattern anchored on `"failure_count"` cannot match inside a JSON
-- string, where every quote is escaped.
local raw = redis.pcall('GET', KEYS[1])
if type(raw) ~= 'string' then return {0, 0} end
local ok, v = pcall(cjson.decode, raw)
if not (ok and type(v) == 'table' and v.provider_id == ARGV[1]
        and v.endpoint_id == ARGV[2] and v.key_id == ARGV[3]) then
  return {0, 0}
end
local e = v.expire_at
if type(e) ~= 'number' or e ~= e or e <= tonumber(ARGV[4]) then return {0, 0} end
local n = v.failure_count
local kind = type(n)
if kind ~= 'number' or n ~= n or n < 0 or n > 1e9 then n = 0 end
n = math.floor(n) + 1
if n >= tonumber(ARGV[5]) then
  redis.call('UNLINK', KEYS[1])
  return {2, n}
end
local field = '"failure_count": ' .. string.format('%d', n)
local s, f
if kind == 'string' then
  s, f = string.find(raw, '"failure_count"%s*:%s*"[^"\\]*"')
elseif kind ~= 'nil' then
  -- a number, or JSON null / true / false (cjson.null is userdata)
  s, f = string.find(raw, '"failure_count"%s*:%s*[%w.+-]+')
end
local nv
if s then
  nv = string.sub(raw, 1, s - 1) .. field .. string.sub(raw, f + 1)
elseif kind == 'nil' then
  local close = string.find(raw, '}%s*$')
  if not close then return {0, 0} end
  nv = string.sub(raw, 1, close - 1) .. ', ' .. field .. string.sub(raw, close)
else
  -- a field we cannot rewrite in place (an object, an escaped string):
  -- leave the value alone rather than write a duplicate key
  return {0, 0}
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl > 0 then
  redis.call('SET', KEYS[1], nv, 'PX', pttl)
else
  redis.call('SET', KEYS[1], nv)
end
return {1, n}
