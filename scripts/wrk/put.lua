-- wrk script: etcd v3 JSON gateway puts (POST /v3/kv/put), one new key per request.
--
-- Usage: wrk -s put.lua URL -- [prefix] [keyspace] [value_bytes]
--   prefix      key prefix, distinct per wrk process so that processes never overwrite each
--               other's keys (default "bench/put/")
--   keyspace    keys per wrk thread; request i of a thread writes key i mod keyspace, so the
--               key space stays bounded however long wrk runs (default 10000)
--   value_bytes value size (default 256)
-- Keys look like <prefix><thread>/<8-digit index>.
-- With BENCH_PUT_ONCE=1 in the environment each thread stops after `keyspace` responses, so a
-- load of exactly threads x keyspace distinct keys ends by itself (wrk itself still waits for -d
-- or SIGINT).  response() is defined only then: wrk parses response headers and bodies for Lua
-- only when the script has a response() function, which would slow the throughput runs.  done() prints one parseable line
--   BENCH_RESULT requests=N duration_us=N status_errors=N ... p50_us=N p99_us=N
-- and a BENCH_QUANTILES line (1000 latency quantiles, us) so that a caller running several wrk
-- processes can merge their latency distributions.
--
-- The base64 and done() code is repeated in range.lua on purpose: wrk offers no way to locate
-- a sibling module, and each script must run on its own.

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Standard padded base64 (the gateway rejects the URL-safe alphabet and missing padding).
local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = B64:sub(c1 + 1, c1 + 1) .. B64:sub(c2 + 1, c2 + 1)
      .. (b and B64:sub(c3 + 1, c3 + 1) or "=") .. (c and B64:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

-- setup() runs in wrk's main Lua state once per thread: give each thread its own number so
-- that threads of one process write disjoint keys.
local next_thread = 0
function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

local prefix, keyspace, value64
local counter = 0

function init(args)
  prefix = args[1] or "bench/put/"
  keyspace = tonumber(args[2] or "10000")
  local value_bytes = tonumber(args[3] or "256")
  -- The value never changes: encode it once, not per request.
  value64 = b64(string.rep("v", value_bytes))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local key = string.format("%s%d/%08d", prefix, thread_id or 0, counter % keyspace)
  counter = counter + 1
  local body = '{"key":"' .. b64(key) .. '","value":"' .. value64 .. '"}'
  return wrk.format("POST", "/v3/kv/put", nil, body)
end

if os.getenv("BENCH_PUT_ONCE") == "1" then
  local responses = 0
  function response(status, headers, body)
    responses = responses + 1
    if responses == keyspace then
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d status_errors=%d connect_errors=%d "
      .. "read_errors=%d write_errors=%d timeouts=%d p50_us=%d p99_us=%d mean_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), math.floor(latency.mean), latency.max))
  local q = {}
  for i = 0, 999 do
    q[#q + 1] = string.format("%d", latency:percentile((i + 0.5) / 10))
  end
  io.write("BENCH_QUANTILES " .. table.concat(q, ",") .. "\n")
end
