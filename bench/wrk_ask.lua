-- wrk script: POST /ask with the hand-written test-set questions, in turn (bench/http_load.sh).
local questions = {}
for line in io.lines(os.getenv("QA_WRK_QUESTIONS") or "tests/data/qa_testset.jsonl") do
  local q = line:match('"question":%s*"(.-)"%s*,')
  if q then questions[#questions + 1] = q end
end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  i = i % #questions + 1
  return wrk.format(nil, "/ask", nil, '{"question": "' .. questions[i] .. '"}')
end

local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT rps=%.2f p50_ms=%.1f p95_ms=%.1f p99_ms=%.1f requests=%d errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, summary.requests, errors, summary.errors.status))
end
