-- wrk script for the per_user variant of the credmgr benchmarks: each request presents the
-- next user's JWT, from the file named by CREDMGR_BENCH_JWTS (one a line), so that the load
-- rotates through every user and their own cached token. The requests are formatted once, in
-- `init`. The report line is `wrk-report.lua`'s (its path in CREDMGR_BENCH_REPORT).
local requests = {}
local next_user = 0

function init(args)
  for line in io.lines(os.getenv("CREDMGR_BENCH_JWTS")) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. line })
    end
  end
  if #requests == 0 then
    error("no JWTs in " .. os.getenv("CREDMGR_BENCH_JWTS"))
  end
end

function request()
  next_user = next_user % #requests + 1
  return requests[next_user]
end

dofile(os.getenv("CREDMGR_BENCH_REPORT"))
