-- Repair after a blind "swap" touch (docs/affinity.md "Touch: the swap
-- path"): the Redis store wrote W with `SET key W EX ttl GET` expecting the
-- old value to be the exact bytes it last knew; the returned old value O
-- was something else, so W may be wrong in its count or created_at (never in
-- its target). This script puts in what the touch should have done to O,
-- unless a later writer already replaced W.
--
-- KEYS[1] storage key; ARGV 1-8 exactly as touch.lua's (head, now, mid,
-- ttl, provider_id, endpoint_id, key_id, delta); then
--   9 W's created_at text, 10 W's request_count text (W = head .. ARGV[9]
--     .. mid .. ARGV[10] .. '}', rebuilt here rather than sent);
--   11 '1' to apply even a count that would go below 0 (clamped), else '0';
--   12 O, the value SET ... GET returned; absent when the key did not exist.
-- Returns what touch.lua would have returned for O: 1, 3, 4, or
-- "COUNT CREATED_AT" for a refresh; or "WAIT" when nothing was done yet
-- (see below: the caller runs it again shortly).
--
-- R = touch(O). With cur = GET KEYS[1]:
--   cur == W      nobody wrote after us: SET R (EX ttl);
--   cur nil       a delete after our write wins: nothing;
--   cur a refresh of W (same head, so same target, and W's created_at
--                 text): add R.count - W.count to its count, KEEPTTL;
--   otherwise     a later switch or reset wins: nothing.
-- Counts are additive, so refreshes racing any number of swaps and scripts
-- end exact. Only their partial sums may be negative: a stale swap from
-- another process may have written a low count whose own (positive) repair
-- has not run yet, and adding a negative R.count - W.count to it would go
-- below 0, which a value cannot hold (and clamping would lose the count).
-- Then this repair answers "WAIT" without writing, and the caller runs it
-- again: positive corrections always apply, so the wait ends as soon as the
-- other repairs land (ARGV[11] = '1' after the caller's deadline clamps). The parse of O is touch.lua's, kept side by side with it (each
-- script is embedded as one file; Redis has no script includes): change both.
local h, mid = ARGV[1], ARGV[3]
local wc, wn = ARGV[9], ARGV[10]
local W = h .. wc .. mid .. wn .. '}'
local MAX = '9223372036854775807'
local d = tonumber(ARGV[8])
local now = tonumber(ARGV[2])
local function finite(v)
  return type(v) == 'number' and v == v and v ~= math.huge and v ~= -math.huge
end
-- decimal text <-> (hi, lo) with lo < 1e9: exact in doubles up to INT64_MAX
local function split(n)
  if #n > 19 then n = MAX end
  if #n <= 9 then return 0, tonumber(n) end
  return tonumber(string.sub(n, 1, -10)), tonumber(string.sub(n, -9))
end
local function join(hi, lo)
  local carry = math.floor(lo / 1e9)
  hi, lo = hi + carry, lo - carry * 1e9
  if hi < 0 then return nil end
  local s = hi > 0 and string.format('%d%09d', hi, lo) or string.format('%d', lo)
  if #s > 19 or (#s == 19 and s > MAX) then return MAX end
  return s
end
local function add(n, dd) -- dd >= 1
  local hi, lo = split(n)
  return join(hi, lo + dd)
end
-- touch.lua's decision on a value: created text, count text, outcome (nil
-- for a refresh).
local function effect(raw)
  if type(raw) ~= 'string' then return ARGV[2], ARGV[8], 1 end
  if string.find(raw, h, 1, true) == 1 then
    local c, e, n = string.match(raw,
      '^(-?%d[%d.eE+-]*), "expire_at": (-?%d[%d.eE+-]*), "request_count": (%d+)}$', #h + 1)
    e = e and tonumber(e)
    if finite(e) and finite(tonumber(c)) and (#n == 1 or string.byte(n) ~= 48) then
      if e > now then return c, add(n, d), nil end
      return ARGV[2], ARGV[8], 1
    end
  end
  local ok, v = pcall(cjson.decode, raw)
  if ok and type(v) == 'table' and type(v.provider_id) == 'string'
     and type(v.endpoint_id) == 'string' and type(v.key_id) == 'string'
     and finite(v.expire_at) and v.expire_at > now then
    if v.provider_id ~= ARGV[5] then return ARGV[2], ARGV[8], 4 end
    if v.endpoint_id ~= ARGV[6] or v.key_id ~= ARGV[7] then
      return ARGV[2], ARGV[8], 3
    end
    local created = string.match(raw, '"created_at": *(-?[%d.eE+-]+)')
    if not (created and tonumber(created) == v.created_at) then
      created = nil
      if finite(v.created_at) then
        for p = 15, 17 do -- repr(): the shortest text that reads back
          created = string.format('%.' .. p .. 'g', v.created_at)
          if tonumber(created) == v.created_at then break end
        end
        if not string.find(created, '[%.eEn]') then created = created .. '.0' end
      end
    end
    if created then
      local rc = v.request_count
      local cnt = string.match(raw, '"request_count": *(%d+)%s*[,}]')
      if not (cnt and tonumber(cnt) == rc and (#cnt == 1 or string.byte(cnt) ~= 48)) then
        if not finite(rc) or rc < 0 then
          cnt = '0'
        elseif rc >= 9.2233720368547758e18 then
          cnt = MAX
        else
          cnt = string.format('%.0f', math.floor(rc))
        end
      end
      return created, add(cnt, d), nil
    end
  end
  return ARGV[2], ARGV[8], 1
end
local rcreated, rcount, outcome = effect(ARGV[12])
local function reply(count, created)
  if outcome then return outcome end
  return count .. ' ' .. created
end
local cur = redis.call('GET', KEYS[1])
if cur == W then
  local r = h .. rcreated .. mid .. rcount .. '}'
  if ARGV[4] ~= '0' then
    redis.call('SET', KEYS[1], r, 'EX', ARGV[4])
  else
    redis.call('SET', KEYS[1], r)
  end
  return reply(rcount, rcreated)
end
if type(cur) == 'string' and string.find(cur, h, 1, true) == 1 then
  local c, e, n = string.match(cur,
    '^(-?%d[%d.eE+-]*), "expire_at": (-?%d[%d.eE+-]*), "request_count": (%d+)}$', #h + 1)
  if c == wc then
    -- a refresh of W by a later writer: move its count by R.count - W.count
    local ch, cl = split(n)
    local rh, rl = split(rcount)
    local wh, wl = split(wn)
    local fixed = join(ch + rh - wh, cl + rl - wl)
    if not fixed then
      if ARGV[11] ~= '1' then return 'WAIT' end
      fixed = '0'
    end
    redis.call('SET', KEYS[1], h .. c .. ', "expire_at": ' .. e .. ', "request_count": '
               .. fixed .. '}', 'KEEPTTL')
    return reply(fixed, c)
  end
end
return reply(rcount, rcreated)
