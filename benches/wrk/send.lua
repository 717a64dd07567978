-- wrk script for the cross-check of the load bench (docs/benchmarks.md, "Cross-check with wrk").
--
--   wrk -t1 -c32 -d30s --timeout 30s -s benches/wrk/send.lua http://127.0.0.1:PORT
--
-- Sends the same request as the bench's generator: POST /message:send with the bench's
-- 64-byte text part. The node answers 415 to a body without a JSON content type, so the
-- header is set here. No response() callback: defining one makes wrk parse every body,
-- which would cost generator CPU; wrk counts non-2xx answers itself.

wrk.method = "POST"
wrk.path = "/message:send"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"role":"user","parts":[{"type":"text","content":'
  .. '"benchmark message: sixty-four bytes of text, the same every time."}],'
  .. '"context_id":"bench"}'

-- One machine-readable line after wrk's own report (the bench's --wrk mode parses it).
-- Latencies are wrk's, in microseconds: from the request's first write to the end of its
-- response, like the bench's generator (both are closed-loop).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d "
      .. "p50_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
