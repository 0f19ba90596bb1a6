-- Wireshark / tshark dissector for the ANTS wire format (docs/wire-format.md): capsules,
-- code requests, code chunks and code nacks (version 1), traced capsules with their trace
-- extension and trace reports with their events (version 2), one message per UDP datagram.
--
--   tshark -X lua_script:tools/wireshark/ants.lua -r capture.pcapng -Y ants
--   wireshark -X lua_script:tools/wireshark/ants.lua capture.pcapng
--
-- or copy this file into Wireshark's personal Lua plugins directory. It registers on UDP
-- port 3322 (the default capsule port) and as a heuristic UDP dissector (magic A7 5C,
-- version 1 kind 1-4 or version 2 kind 1 or 5), so overlay nodes on any port are decoded
-- too. Note: Wireshark does
-- not run -X lua_script scripts when started as root; run it as a user.

local ants = Proto("ants", "ANTS active network")

local kinds = { [1] = "capsule", [2] = "code-request", [3] = "code-chunk", [4] = "code-nack",
  [5] = "trace-report" }
local events = { [1] = "injected", [2] = "received", [3] = "held-for-code", [4] = "code-ready",
  [5] = "ran", [6] = "sent", [7] = "delivered", [8] = "dropped", [9] = "truncated" }
local reasons = { [1] = "not-found", [2] = "rate-limited", [3] = "too-large" }

local f = {
  magic = ProtoField.uint16("ants.magic", "Magic", base.HEX),
  version = ProtoField.uint8("ants.version", "Version"),
  kind = ProtoField.uint8("ants.kind", "Kind", base.DEC, kinds),
  kind_name = ProtoField.string("ants.kind_name", "Kind name"),
  flags = ProtoField.uint8("ants.flags", "Flags", base.HEX),
  trace = ProtoField.bool("ants.flags.trace", "Trace", 8, nil, 0x01),
  resource = ProtoField.uint16("ants.resource", "Resource"),
  type = ProtoField.string("ants.type", "Capsule type (SHA-256 of the module)"),
  src = ProtoField.string("ants.src", "Source"),
  dst = ProtoField.string("ants.dst", "Destination"),
  prev = ProtoField.string("ants.prev", "Previous active hop"),
  header_len = ProtoField.uint16("ants.header_len", "Header length"),
  payload_len = ProtoField.uint16("ants.payload_len", "Payload length"),
  header = ProtoField.bytes("ants.header", "Protocol header"),
  payload = ProtoField.bytes("ants.payload", "Payload"),
  first_chunk = ProtoField.uint32("ants.request.first_chunk", "First chunk"),
  bitmap_len = ProtoField.uint16("ants.request.bitmap_len", "Bitmap length"),
  bitmap = ProtoField.bytes("ants.request.bitmap", "Wanted chunks (bitmap, LSB first)"),
  chunk_len = ProtoField.uint16("ants.chunk.len", "Chunk length"),
  total_len = ProtoField.uint32("ants.chunk.total", "Module length"),
  offset = ProtoField.uint32("ants.chunk.offset", "Chunk offset"),
  index = ProtoField.uint32("ants.chunk.index", "Chunk index"),
  chunk = ProtoField.bytes("ants.chunk.bytes", "Chunk bytes"),
  reason = ProtoField.uint8("ants.nack.reason", "Reason", base.DEC, reasons),
  trace_id = ProtoField.uint64("ants.trace.id", "Trace id", base.HEX),
  trace_clock = ProtoField.uint64("ants.trace.clock", "Lamport time of the send"),
  hops = ProtoField.uint8("ants.report.hops", "Hops left"),
  event_count = ProtoField.uint8("ants.report.events", "Events"),
  origin = ProtoField.string("ants.report.origin", "Origin (the traced capsule's source)"),
  reporter = ProtoField.string("ants.report.reporter", "Reporter"),
  event = ProtoField.uint8("ants.event.kind", "Event", base.DEC, events),
  event_detail = ProtoField.uint8("ants.event.detail", "Detail"),
  event_resource = ProtoField.uint16("ants.event.resource", "Resource"),
  event_a = ProtoField.uint32("ants.event.a", "Value a"),
  event_b = ProtoField.uint32("ants.event.b", "Value b"),
  event_clock = ProtoField.uint64("ants.event.clock", "Lamport time"),
  event_time = ProtoField.uint64("ants.event.time_ns", "Reporter's clock (ns)"),
  event_peer = ProtoField.string("ants.event.peer", "Peer"),
}
ants.fields = {}
for _, field in pairs(f) do
  table.insert(ants.fields, field)
end

local e_malformed = ProtoExpert.new("ants.malformed", "Malformed ANTS message",
  expert.group.MALFORMED, expert.severity.ERROR)
ants.experts = { e_malformed }

-- An active address: 16 bytes; IPv4-mapped ones print as dotted quads, like `ants` does.
local function address(tvb)
  local b = tvb:bytes()
  local mapped = true
  for i = 0, 9 do
    if b:get_index(i) ~= 0 then mapped = false end
  end
  if mapped and b:get_index(10) == 0xff and b:get_index(11) == 0xff then
    return string.format("%d.%d.%d.%d", b:get_index(12), b:get_index(13), b:get_index(14),
      b:get_index(15))
  end
  return tostring(tvb:ipv6())
end

local function hex(tvb)
  return string.lower(tostring(tvb:bytes()))
end

-- Whether `tvb` starts like an ANTS message.
local function looks_like_ants(tvb)
  if tvb:len() < 6 then return false end
  if tvb(0, 2):uint() ~= 0xA75C then return false end
  local version, kind = tvb(2, 1):uint(), tvb(3, 1):uint()
  if version == 1 then return kind >= 1 and kind <= 4 end
  return version == 2 and (kind == 1 or kind == 5)
end

local function malformed(tree, why)
  tree:add_proto_expert_info(e_malformed, why)
  return nil
end

-- Dissect the message at the start of `tvb`; returns its length, or nil when it is malformed
-- (marked as such).
local function dissect_one(tvb, tree, infos)
  local info
  local kind = tvb(3, 1):uint()
  local t = tree:add(ants, tvb(), "ANTS " .. kinds[kind])
  t:add(f.magic, tvb(0, 2))
  t:add(f.version, tvb(2, 1))
  t:add(f.kind, tvb(3, 1))
  t:add(f.kind_name, tvb(3, 1), kinds[kind])
  local len
  local flags = t:add(f.flags, tvb(4, 1))
  flags:add(f.trace, tvb(4, 1))
  local version = tvb(2, 1):uint()
  if kind == 1 then
    if tvb:len() < 92 then return malformed(t, "capsule shorter than 92 bytes") end
    local hl, pl = tvb(88, 2):uint(), tvb(90, 2):uint()
    local ext = version == 2 and 16 or 0
    len = 92 + hl + pl + ext
    if tvb:len() < len then return malformed(t, "capsule longer than the datagram") end
    local ty, src, dst, prev = hex(tvb(8, 32)), address(tvb(40, 16)), address(tvb(56, 16)),
      address(tvb(72, 16))
    t:add(f.resource, tvb(6, 2))
    t:add(f.type, tvb(8, 32), ty)
    t:add(f.src, tvb(40, 16), src)
    t:add(f.dst, tvb(56, 16), dst)
    t:add(f.prev, tvb(72, 16), prev)
    t:add(f.header_len, tvb(88, 2))
    t:add(f.payload_len, tvb(90, 2))
    if hl > 0 then t:add(f.header, tvb(92, hl)) end
    if pl > 0 then t:add(f.payload, tvb(92 + hl, pl)) end
    info = string.format("capsule %s %s -> %s via %s rl=%d", string.sub(ty, 1, 12),
      src, dst, prev, tvb(6, 2):uint())
    if ext > 0 then
      local at = 92 + hl + pl
      t:add(f.trace_id, tvb(at, 8))
      t:add(f.trace_clock, tvb(at + 8, 8))
      info = info .. string.format(" [trace %s clock %s]", tostring(tvb(at, 8):uint64():tohex()),
        tostring(tvb(at + 8, 8):uint64()))
    end
  elseif kind == 2 then
    if tvb:len() < 46 then return malformed(t, "code-request shorter than 46 bytes") end
    local bl = tvb(44, 2):uint()
    len = 46 + bl
    if bl > 256 or tvb:len() < len then return malformed(t, "code-request length mismatch") end
    local ty = hex(tvb(8, 32))
    t:add(f.type, tvb(8, 32), ty)
    t:add(f.first_chunk, tvb(40, 4))
    t:add(f.bitmap_len, tvb(44, 2))
    if bl > 0 then t:add(f.bitmap, tvb(46, bl)) end
    info = string.format("code-request %s from chunk %d", string.sub(ty, 1, 12),
      tvb(40, 4):uint())
  elseif kind == 3 then
    if tvb:len() < 48 then return malformed(t, "code-chunk shorter than 48 bytes") end
    local cl = tvb(6, 2):uint()
    len = 48 + cl
    if tvb:len() < len then return malformed(t, "code-chunk longer than the datagram") end
    local ty, off = hex(tvb(8, 32)), tvb(44, 4):uint()
    t:add(f.chunk_len, tvb(6, 2))
    t:add(f.type, tvb(8, 32), ty)
    t:add(f.total_len, tvb(40, 4))
    t:add(f.offset, tvb(44, 4))
    t:add(f.index, tvb(44, 4), math.floor(off / 1024))
    if cl > 0 then t:add(f.chunk, tvb(48, cl)) end
    info = string.format("code-chunk %s bytes %d..%d of %d", string.sub(ty, 1, 12),
      off, off + cl, tvb(40, 4):uint())
  elseif kind == 5 then
    if tvb:len() < 80 then return malformed(t, "trace-report shorter than 80 bytes") end
    local n = tvb(7, 1):uint()
    len = 80 + 44 * n
    if n > 24 or tvb:len() < len then return malformed(t, "trace-report length mismatch") end
    local ty, origin, reporter = hex(tvb(8, 32)), address(tvb(40, 16)), address(tvb(56, 16))
    t:add(f.hops, tvb(6, 1))
    t:add(f.event_count, tvb(7, 1))
    t:add(f.type, tvb(8, 32), ty)
    t:add(f.origin, tvb(40, 16), origin)
    t:add(f.reporter, tvb(56, 16), reporter)
    t:add(f.trace_id, tvb(72, 8))
    for i = 0, n - 1 do
      local e = tvb(80 + 44 * i, 44)
      local et = t:add(f.event, e(0, 1))
      et:add(f.event_detail, e(1, 1))
      et:add(f.event_resource, e(2, 2))
      et:add(f.event_a, e(4, 4))
      et:add(f.event_b, e(8, 4))
      et:add(f.event_clock, e(12, 8))
      et:add(f.event_time, e(20, 8))
      et:add(f.event_peer, e(28, 16), address(e(28, 16)))
    end
    info = string.format("trace-report %s from %s to %s: %d events",
      tostring(tvb(72, 8):uint64():tohex()), reporter, origin, n)
  else
    len = 40
    if tvb:len() < len then return malformed(t, "code-nack shorter than 40 bytes") end
    local ty = hex(tvb(8, 32))
    t:add(f.reason, tvb(6, 1))
    t:add(f.type, tvb(8, 32), ty)
    info = string.format("code-nack %s: %s", string.sub(ty, 1, 12),
      reasons[tvb(6, 1):uint()] or "unknown reason")
  end
  t:set_len(len)
  table.insert(infos, info)
  return len
end

-- A datagram holds one message; a UDP GSO or GRO buffer captured on loopback holds a run of
-- them back to back (one per segment), so dissect until the data ends.
function ants.dissector(tvb, pinfo, tree)
  if not looks_like_ants(tvb) then return 0 end
  pinfo.cols.protocol = "ANTS"
  local infos, offset = {}, 0
  while offset < tvb:len() and looks_like_ants(tvb(offset):tvb()) do
    local n = dissect_one(tvb(offset):tvb(), tree, infos)
    if not n then break end
    offset = offset + n
  end
  if offset < tvb:len() then
    tree:add_proto_expert_info(e_malformed, "bytes after the last whole message")
  end
  if #infos == 1 then
    pinfo.cols.info = infos[1]
  else
    pinfo.cols.info = string.format("%d messages: %s", #infos, infos[1] or "")
  end
  return tvb:len()
end

local function heuristic(tvb, pinfo, tree)
  if not looks_like_ants(tvb) then return false end
  ants.dissector(tvb, pinfo, tree)
  return true
end

DissectorTable.get("udp.port"):add(3322, ants)
ants:register_heuristic("udp", heuristic)
