-- wrk's `done` hook for the credmgr benchmarks: one machine-readable line with the exact
-- percentiles (wrk's own --latency table rounds them) and the error counts. Latencies are in
-- microseconds, as wrk records them.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'credmgr-bench {"requests":%d,"duration_us":%d,"p50_us":%.0f,"p99_us":%.0f,"non_2xx":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
