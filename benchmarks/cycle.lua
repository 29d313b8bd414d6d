-- wrk script: the full cycle, allocate -> infer -> release, chained through the answers.
--
-- wrk gives callbacks no connection identity, so each wrk thread keeps two queues: allocations
-- waiting for their inference and allocations waiting for their release. A connection that may send
-- takes a release first, else an inference, else starts a new cycle with an allocate; an answer moves
-- its allocation to the next queue. Every allocation so goes allocate -> infer -> release in order,
-- the three requests come in equal numbers, and at most about twice as many allocations as
-- connections are live at once. `done` prints the cycles completed and the unexpected answers.
--
-- Configured through the environment: CYCLE_POOL (pool id), CYCLE_MODEL, CYCLE_KEY (bearer key),
-- CYCLE_KEYS (comma-separated keys, one per wrk thread in turn: behind a router that hashes the key,
-- docs/cells.md, the threads' tenants then live in different cells), and
-- CYCLE_IDEMPOTENCY=1 to send every allocate as Harpoon's orchestrator does through the connector: a
-- fresh Idempotency-Key, a label carrying it and a 300 s lease, so the allocations a stopped run leaves
-- behind expire (what benchmarks/soak.py measures memory with).

local pool = os.getenv("CYCLE_POOL") or "gpu-pool-1"
local model = os.getenv("CYCLE_MODEL") or "gemma-270m"
local key = os.getenv("CYCLE_KEY") or "dev-key"
local idempotency = os.getenv("CYCLE_IDEMPOTENCY") == "1"
local run = tostring(os.time()) .. "-" .. tostring(math.random(1000000))
local sent = 0

local keys = {}
for each in string.gmatch(os.getenv("CYCLE_KEYS") or "", "[^,]+") do
  table.insert(keys, each)
end

local json_headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key }
local plain_headers = { ["Authorization"] = "Bearer " .. key }
local allocate_body = string.format(
  '{"pool_id":"%s","requirements":{"tflops":5,"vram_mb":2048,"model":"%s"}}', pool, model)
local infer_body =
  '{"allocation_id":"%s","prompt":"Summarise the integration guide in one short sentence, please.",'
  .. '"max_tokens":16,"temperature":0.7}'

local to_infer, to_release = {}, {}
cycles, unexpected = 0, 0

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  if #keys > 0 then
    thread:set("thread_key", keys[(#threads - 1) % #keys + 1])
  end
end

-- Runs in each thread after setup() gave it its key (a global of the thread's own Lua state).
function init(args)
  if thread_key then
    key = thread_key
    json_headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key }
    plain_headers = { ["Authorization"] = "Bearer " .. key }
  end
end

function request()
  local id = table.remove(to_release)
  if id then
    return wrk.format("DELETE", "/v1/allocate/" .. id, plain_headers, nil)
  end
  id = table.remove(to_infer)
  if id then
    return wrk.format("POST", "/v1/inference", json_headers, string.format(infer_body, id))
  end
  if idempotency then
    sent = sent + 1
    local idempotency_key = run .. "-" .. sent
    local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key,
      ["Idempotency-Key"] = idempotency_key }
    local body = string.format(
      '{"pool_id":"%s","requirements":{"tflops":5,"vram_mb":2048,"model":"%s"},"ttl_seconds":300,'
      .. '"labels":{"client_request":"%s"}}',
      pool, model, idempotency_key)
    return wrk.format("POST", "/v1/allocate", headers, body)
  end
  return wrk.format("POST", "/v1/allocate", json_headers, allocate_body)
end

function response(status, headers, body)
  if status == 204 then
    cycles = cycles + 1
    return
  end
  local id = body and string.match(body, '"allocation_id"%s*:%s*"([^"]+)"')
  if status == 201 and id then
    table.insert(to_infer, id)
  elseif status == 200 and id and string.find(body, '"inference_id"', 1, true) then
    table.insert(to_release, id)
  else
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local total_cycles, total_unexpected = 0, 0
  for _, thread in ipairs(threads) do
    total_cycles = total_cycles + thread:get("cycles")
    total_unexpected = total_unexpected + thread:get("unexpected")
  end
  io.write(string.format("CYCLES %d UNEXPECTED %d DURATION_US %d\n", total_cycles, total_unexpected,
    summary.duration))
end
