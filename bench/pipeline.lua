-- wrk script: send `depth` requests per write (HTTP pipelining), TechEmpower style.
-- usage: wrk -s pipeline.lua URL -- 16
local depth = 16
local path = nil

init = function(args)
  depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format(nil, path)
  end
  req = table.concat(r)
end

setup = function(thread) end

request = function()
  return req
end
