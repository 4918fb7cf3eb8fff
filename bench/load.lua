-- wrk script for bench/run.py: GETs of a form page, or POSTs of that form
-- with a different patient each time.
--
--   wrk -t1 -c4 -d10s -s bench/load.lua URL -- MODE COOKIE ORIGIN REFERER BODY
--
-- MODE is "get" or "post". COOKIE is the Cookie header a browser sends after
-- GETting the page (the csrftoken cookie; the CSRF token itself is in BODY
-- and stays valid with that cookie for every POST). BODY is the urlencoded
-- form with "__N__" where each request puts a string no other request in the
-- run uses (the thread's number and a counter): bench/run.py puts it in the
-- email address, so every POST is a different patient.
--
-- Every response's status is counted; done() prints one JSON line, prefixed
-- "BENCH_JSON ", with the counts, the totals and the latency percentiles.

local threads = {}
local next_thread = 1

function setup(thread)
   thread:set("tid", next_thread)
   next_thread = next_thread + 1
   table.insert(threads, thread)
end

function init(args)
   mode = args[1]
   body_template = args[5]
   counter = 0
   statuses = {}
   wrk.headers["Cookie"] = args[2]
   wrk.headers["Origin"] = args[3]
   wrk.headers["Referer"] = args[4]
   wrk.headers["User-Agent"] = "portal-reset-bench"
   if mode == "post" then
      wrk.method = "POST"
      wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
   end
end

function request()
   if mode ~= "post" then
      return wrk.format("GET")
   end
   counter = counter + 1
   local unique = "t" .. tid .. "n" .. counter
   local body = body_template:gsub("__N__", unique)
   return wrk.format("POST", nil, nil, body)
end

function response(status, headers, body)
   local key = tostring(status)
   statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
   local totals = {}
   for _, thread in ipairs(threads) do
      local counts = thread:get("statuses")
      for key, value in pairs(counts) do
         totals[key] = (totals[key] or 0) + value
      end
   end
   local parts = {}
   for key, value in pairs(totals) do
      table.insert(parts, string.format('"%s": %d', key, value))
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}, ' ..
      '"statuses": {%s}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      table.concat(parts, ", ")))
end
