-- wrk script: POST chat completions. BENCH_KEY is the API key; BENCH_UNIQUE=1 makes every
-- request body unique (a cache miss every time), else every request is identical (hits).
-- BENCH_NO_CACHE=1 sends Cache-Control: no-cache (the gateway answers from upstream).
local key = os.getenv("BENCH_KEY") or ""
local unique = os.getenv("BENCH_UNIQUE") == "1"
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
if os.getenv("BENCH_NO_CACHE") == "1" then
  headers["Cache-Control"] = "no-cache"
end
local thread_id = 0
local counter = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

function init(args)
  math.randomseed(os.time() + (tid or 0) * 7919)
  salt = tostring(math.random(1, 1000000000))
end

function request()
  counter = counter + 1
  local content = "Say hello to the benchmark"
  if unique then
    content = content .. " " .. salt .. "-" .. tostring(tid or 0) .. "-" .. counter
  end
  local body = '{"model":"instant","messages":[{"role":"user","content":"' .. content ..
    '"}],"max_tokens":20,"temperature":0}'
  return wrk.format("POST", "/v1/chat/completions", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"mean_us": %.1f, "non2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, e.status, e.connect + e.read + e.write + e.timeout))
end
