-- wrk script: POST one body after another from the file $BODIES (one request body per line)
-- to $TARGET with the API key $KEY; prints one JSON line of figures when done.
local bodies = {}
for line in io.lines(os.getenv("BODIES")) do bodies[#bodies + 1] = line end
local next_body = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
local target = os.getenv("TARGET")

function setup(thread)
  thread:set("offset", math.random(#bodies))
end

function init(args)
  next_body = tonumber(offset) or 0
end

function request()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, target, nil, bodies[next_body])
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "non_2xx": %d, "socket_errors": %d, '
      .. '"p50_ms": %.2f, "p90_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f}\n',
    summary.requests, summary.duration / 1e6, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
