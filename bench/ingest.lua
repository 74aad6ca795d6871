-- wrk script for the ingest figures: POSTs the Bringg template with a distinct run id per
-- request (so the relay's dedupe never short-circuits) and prints one JSON line when done.
-- Arguments: template path, Authorization header value, first run id.
local template, authorization, next_id
local slot = "987654321987"

function init(args)
  local file = assert(io.open(args[1], "rb"))
  template = file:read("*a")
  file:close()
  authorization = args[2]
  next_id = tonumber(args[3])
end

function request()
  next_id = next_id + 1
  local body = template:gsub(slot, string.format("%d", next_id), 1)
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = authorization,
  }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
