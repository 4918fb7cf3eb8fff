-- wrk script for bench/run.py: GETs of a form page, or POSTs of that form
-- with a different patient each time.
--
--   wrk -t1 -c4 -d10s -s bench/load.lua URL -- MODE COOKIE ORIGIN REFERER BODY [ADDRESS]
--
-- MODE is "get" or "post". COOKIE is the Cookie header a browser sends after
-- GETting the page (the csrftoken cookie; the CSRF token itself is in BODY
-- and stays valid with that cookie for every POST). BODY is the urlencoded
-- form with "__N__" where each request puts a string no other request in the
-- run uses (the thread's number and a counter): bench/run.py puts it in the
-- email address, so every POST is a different patient.
--
-- ADDRESS, if given, is sent as X-Real-IP (the header the TLS proxy sets,
-- CLIENT_IP_HEADER): as it is, or with "__H__" replaced by a hex number no
-- other request of the run uses, so that every POST comes from another
-- client (an IPv6 /64 of its own: "2001:db8:<run>:__H__::1").
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
   address_template = args[6] or ""
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
   -- wrk.format takes a request's headers instead of wrk.headers, not on
   -- top of them: a copy, with X-Real-IP set per request.
   with_address = {}
   for key, value in pairs(wrk.headers) do
      with_address[key] = value
   end
end

function request()
   if mode ~= "post" then
      return wrk.format("GET")
   end
   counter = counter + 1
   local unique = "t" .. tid .. "n" .. counter
   local body = body_template:gsub("__N__", unique)
   if address_template == "" then
      return wrk.format("POST", nil, nil, body)
   end
   local hex = string.format("%x", (tid - 1) * 16384 + counter % 16384)
   local address = address_template:gsub("__H__", hex)
   with_address["X-Real-IP"] = address
   return wrk.format("POST", nil, with_address, body)
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
