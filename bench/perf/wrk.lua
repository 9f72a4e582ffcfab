-- wrk script for bench/perf/run.py: every request takes a random line of a pre-generated file.
-- Usage: wrk -s wrk.lua URL -- PATH_ON_SERVER LINES_FILE
-- Each line is "<bearer key or ->\t<JSON body>"; a key of "-" sends no Authorization header.
-- done() prints one JSON line (prefix "WRKJSON ") with throughput, latency percentiles and errors.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  target = args[1]
  lines = {}
  for line in io.lines(args[2]) do
    local tab = string.find(line, "\t", 1, true)
    local key = string.sub(line, 1, tab - 1)
    local headers = { ["Content-Type"] = "application/json" }
    if key ~= "-" then
      headers["Authorization"] = "Bearer " .. key
    end
    table.insert(lines, { headers = headers, body = string.sub(line, tab + 1) })
  end
  math.randomseed(os.time() * 1000 + id)
end

function request()
  local pick = lines[math.random(#lines)]
  return wrk.format("POST", target, pick.headers, pick.body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "rps": %.1f, "p50_us": %d, "p90_us": %d, "p95_us": %d, ' ..
    '"p99_us": %d, "p999_us": %d, "mean_us": %.1f, "max_us": %d, "errors_connect": %d, "errors_read": %d, ' ..
    '"errors_write": %d, "errors_status": %d, "errors_timeout": %d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
