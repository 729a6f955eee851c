-- wrk script: etcd v3 JSON gateway linearizable reads (POST /v3/kv/range) of existing keys.
--
-- Usage: wrk -s range.lua URL -- [prefix] [count]
--   Reads the keys <prefix><8-digit index>, index 0 .. count-1, which the caller must have
--   written beforehand (default prefix "bench/range/", count 1000).  Each thread starts at a
--   different offset and walks the keys in order, so every request reads one existing key.
-- The request omits "serializable", so both etcd and raftkv serve it linearizably (ReadIndex).
-- done() prints the same BENCH_RESULT and BENCH_QUANTILES lines as put.lua.
--
-- The base64 and done() code is repeated from put.lua on purpose: wrk offers no way to locate
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

local next_thread = 0
function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

local bodies = {}
local counter = 0

function init(args)
  local prefix = args[1] or "bench/range/"
  local count = tonumber(args[2] or "1000")
  -- The key set is small and fixed: build every request body once so that the load generator
  -- spends its time on I/O, not on base64.
  for i = 0, count - 1 do
    local key = string.format("%s%08d", prefix, i)
    bodies[#bodies + 1] = '{"key":"' .. b64(key) .. '"}'
  end
  counter = ((thread_id or 0) * 7919) % #bodies
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter % #bodies + 1
  return wrk.format("POST", "/v3/kv/range", nil, bodies[counter])
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
