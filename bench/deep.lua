-- wrk script: GET list pages at many depths, each request with a next_token picked at random
-- from TOKENS (comma-separated), and the bearer key from KEY.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
local tokens = {}
for token in string.gmatch(os.getenv("TOKENS"), "[^,]+") do
    tokens[#tokens + 1] = token
end

function request()
    return wrk.format(nil, wrk.path .. "&next_token=" .. tokens[math.random(#tokens)])
end
