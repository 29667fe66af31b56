-- Shared by every benchmark script: benchmarks/wrk.py runs wrk with a scenario script followed
-- by this file. A scenario script that defines `build(user)` (returning a request made with
-- wrk.format) gets a request per user id; one that does not sends wrk's static request.
--
-- Arguments (after `--`, as key=value): threads=<wrk threads> users=distinct|random|fixed
-- base=<first user id> pool=<how many user ids> rate=<requests/s over all threads, paced>.
--   distinct: base + 0, 1, 2, ... across all threads (wrapping at pool when pool > 0)
--   random:   base + a random number in [0, pool)
--   fixed:    base
-- Statuses are counted per thread ("409 COUPON_SOLD_OUT": the problem's code is added to
-- error statuses) and added up in done(), which prints one line `BENCH_JSON {...}`.

local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

opt = {}
statuses = {}
counter = 0

local function monotonic_ms_source()
   local ok, ffi = pcall(require, "ffi")
   if not ok then
      return nil
   end
   ffi.cdef([[
      typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
      int clock_gettime(int clock_id, bench_timespec *tp);
   ]])
   local ts = ffi.new("bench_timespec")
   return function()
      ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
   end
end

function init(args)
   for _, a in ipairs(args) do
      local k, v = a:match("^([%w_]+)=(.*)$")
      if k then
         opt[k] = v
      end
   end
   nthreads = tonumber(opt.threads or "1")
   base = tonumber(opt.base or "1")
   pool = tonumber(opt.pool or "0")
   users = opt.users or "distinct"
   math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
   local rate = tonumber(opt.rate or "0")
   if rate > 0 then
      -- Paced load: this thread's requests are due every `interval` ms (rate / threads per
      -- second); each connection ready to send takes the next due slot and waits until then.
      -- A connection that comes back late sends at once (the schedule is not reset), so the
      -- offered rate holds while responses are slower than the interval.
      local interval = 1000 * nthreads / rate
      local now = monotonic_ms_source()
      if now then
         local due = nil
         function delay()
            local t = now()
            if due == nil then
               due = t + interval * (tid or 0) / nthreads
            end
            local wait = due - t
            due = due + interval
            if wait < 0 then
               return 0
            end
            return math.floor(wait)
         end
      else
         -- No clock: a fixed pause per request (rate ~ connections * 1000 / pause).
         local per_connection = interval * tonumber(opt.connections or "1") / nthreads
         function delay()
            return math.floor(per_connection)
         end
      end
   end
end

function next_user()
   local n = tid + nthreads * counter
   counter = counter + 1
   if users == "fixed" then
      return base
   elseif users == "random" then
      return base + math.random(0, pool - 1)
   end
   if pool > 0 then
      n = n % pool
   end
   return base + n
end

function id(n)
   return string.format("%.0f", n)
end

if build then
   function request()
      return build(next_user())
   end
end

function response(status, headers, body)
   local key = tostring(status)
   if status >= 400 and body then
      local code = body:match('"code"%s*:%s*"([%w_]+)"')
      if code then
         key = key .. " " .. code
      end
   end
   statuses[key] = (statuses[key] or 0) + 1
end

local function json_string(s)
   return '"' .. tostring(s):gsub('[%c"\\]', "") .. '"'
end

function done(summary, latency, requests)
   local total = {}
   for _, thread in ipairs(threads) do
      local counted = thread:get("statuses")
      for key, n in pairs(counted) do
         total[key] = (total[key] or 0) + n
      end
   end
   local parts = {}
   for key, n in pairs(total) do
      parts[#parts + 1] = json_string(key) .. ":" .. string.format("%d", n)
   end
   local e = summary.errors
   local out = string.format(
      '{"requests":%d,"duration_us":%d,"bytes":%d,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f,"stdev":%.1f},'
         .. '"statuses":{%s}}',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean, latency.stdev,
      table.concat(parts, ",")
   )
   io.write("BENCH_JSON " .. out .. "\n")
end
