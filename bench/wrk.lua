-- wrk script of scripts/bench: publish, queue send and queue receive load.
--
-- Configured by environment variables (set by scripts/bench):
--   BENCH_ADDRS   host:port[,host:port...]  threads are spread over them, so
--                 a cluster is loaded through all its nodes
--   BENCH_MODE    post (publish / send) or get (queue receive)
--   BENCH_PATH    request path; "%s" is replaced by the topic name
--   BENCH_TOPICS  number of topics (names BENCH_PREFIX0..N-1); default 1
--   BENCH_PREFIX  topic name prefix
--   BENCH_BODY    mom (body {"content":"<100 bytes of JSON string>"}) or
--                 raw (the 100-byte message is the body)
--   BENCH_SIZE    message size in bytes (default 100)
--   BENCH_TOKEN   Bearer token sent with every request
-- Prints one line "WRK {json}" with throughput and latency percentiles; in
-- get mode it also counts receives that returned a message ("got") and
-- those that found the queue empty ("empty").

local addrs = nil
local threads = {}
local counter = 0
local mode = os.getenv("BENCH_MODE") or "post"

function setup(thread)
    if addrs == nil then
        addrs = {}
        for hp in string.gmatch(os.getenv("BENCH_ADDRS"), "[^,]+") do
            local h, p = hp:match("^(.+):(%d+)$")
            for _, a in ipairs(wrk.lookup(h, p)) do
                table.insert(addrs, a)
            end
        end
    end
    thread.addr = addrs[counter % #addrs + 1]
    thread:set("id", counter)
    counter = counter + 1
    table.insert(threads, thread)
end

local requests = {}
local next_req = 0
got = 0
empty = 0

function init(args)
    local n = tonumber(os.getenv("BENCH_TOPICS") or "1")
    local prefix = os.getenv("BENCH_PREFIX") or "bench"
    local path = os.getenv("BENCH_PATH")
    local size = tonumber(os.getenv("BENCH_SIZE") or "100")
    local headers = {
        ["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "none"),
    }
    local body = nil
    if mode == "post" then
        headers["Content-Type"] = "application/json"
        if os.getenv("BENCH_BODY") == "mom" then
            -- a JSON string of `size` bytes including its quotes
            body = '{"content":"' .. string.rep("x", size - 2) .. '"}'
        else
            body = string.rep("x", size)
        end
    end
    -- start each thread at a different topic
    next_req = (wrk.thread:get("id") or 0) * 7919
    for i = 0, n - 1 do
        local p = string.gsub(path, "%%s", prefix .. i)
        local m = (mode == "post") and "POST" or "GET"
        requests[i + 1] = wrk.format(m, p, headers, body)
    end
end

function request()
    next_req = next_req + 1
    return requests[next_req % #requests + 1]
end

if mode == "get" then
    local last_empty = false

    function response(status, headers, body)
        if status == 200 and not string.find(body, '"message":null', 1,
                                             true) then
            got = got + 1
            last_empty = false
        else
            empty = empty + 1
            last_empty = true
        end
    end

    -- a consumer that found the queue empty backs off for 1 ms, as a
    -- polling client would, instead of spinning on the shared CPUs
    function delay()
        if last_empty then
            return 1
        end
        return 0
    end
end

function done(summary, latency, requests)
    local g, e = 0, 0
    for _, t in ipairs(threads) do
        g = g + (t:get("got") or 0)
        e = e + (t:get("empty") or 0)
    end
    local errs = summary.errors
    io.write(string.format(
        'WRK {"requests":%d,"duration_s":%.3f,"rps":%.1f,' ..
        '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,' ..
        '"socket_errors":%d,"status_errors":%d,"got":%d,"empty":%d,' ..
        '"got_per_s":%.1f}\n',
        summary.requests, summary.duration / 1e6,
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(90) / 1000,
        latency:percentile(99) / 1000, latency.max / 1000,
        errs.connect + errs.read + errs.write + errs.timeout, errs.status,
        g, e, g / (summary.duration / 1e6)))
end
