-- wrk script: POST JSON bodies of K consecutive corpus lines.
-- usage: wrk ... -s post.lua URL -- SCHEMA K CORPUS [MODEL]
--   SCHEMA  seed   -> {"model_type": MODEL, "data": {"texts": [...]}}
--           inputs -> {"inputs": [...]}        (the naive seed server, LitServe)
--           openai -> {"input": [...], "model": MODEL}
--           image  -> {"model_type": MODEL, "data": {"images": [<each line is base64>]}}
-- Each connection starts at its own offset; done() prints one WRKJSON line.
local bodies, idx, counter = {}, 0, 0

local function esc(s)
  return (s:gsub('\\', '\\\\'):gsub('"', '\\"'):gsub('\t', '\\t'):gsub('\r', ''):gsub('\n', '\\n'))
end

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  local schema, k, file, model = args[1] or "seed", tonumber(args[2] or "1"), args[3], args[4] or "bert"
  local lines = {}
  for line in io.lines(file) do
    if #line > 0 then lines[#lines + 1] = line end
  end
  local n = #lines
  for b = 0, math.max(1, math.floor(n / k)) - 1 do
    local parts = {}
    for j = 1, k do parts[#parts + 1] = '"' .. esc(lines[(b * k + j - 1) % n + 1]) .. '"' end
    local arr = "[" .. table.concat(parts, ",") .. "]"
    if schema == "openai" then
      bodies[#bodies + 1] = '{"input":' .. arr .. ',"model":"' .. model .. '"}'
    elseif schema == "inputs" then
      bodies[#bodies + 1] = '{"inputs":' .. arr .. '}'
    elseif schema == "image" then
      bodies[#bodies + 1] = '{"model_type":"' .. model .. '","data":{"images":' .. arr .. '}}'
    else
      bodies[#bodies + 1] = '{"model_type":"' .. model .. '","data":{"texts":' .. arr .. '}}'
    end
  end
  idx = ((tonumber(wrk.thread:get("tid")) or 0) * 97) % #bodies
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  idx = idx % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[idx])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
    '"err_status":%d,"err_timeout":%d,"lat_p50_us":%d,"lat_p95_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
