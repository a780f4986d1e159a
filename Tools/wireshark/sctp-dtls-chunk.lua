-- Wireshark / tshark dissector for the SCTP DTLS chunk (draft-ietf-tsvwg-sctp-dtls-chunk), which
-- Wireshark 4.0 does not know:
--   * chunk 0x41: the R flag, length, pre-padding, the DTLS 1.3 unified header (RFC 9147 section
--     4: fixed bits, C, S, L, the epoch's low bits), the sequence number as sent (encrypted, RFC
--     9147 section 4.2.3), the encrypted record and the post-padding;
--   * parameter 0x8006 in INIT and INIT ACK: tie breaker, the R, S and C flags and the KMIds;
--   * key management messages on PPID 4242: DTLS 1.3's (draft-westerlund-tsvwg-sctp-dtls-handshake),
--     the DCI byte, then the DTLS records, handed to Wireshark's DTLS dissector; TLS 1.3's
--     (draft-porfiri-tsvwg-sctp-dtls-handshake), the T bit and the epoch's 7 low bits, then TLS
--     records for Wireshark's TLS dissector or a control message (Protection Established). A
--     message's records tell the two apart: DTLS versions begin with 0xfe, TLS ones with 0x03.
-- Usage: tshark -X lua_script:Tools/wireshark/sctp-dtls-chunk.lua -r capture.pcap
--            -d udp.port==PORT,sctp -o sctp.checksum:CRC-32C
-- or copy the file into Wireshark's personal plugins folder. Decrypting the chunk needs its keys
-- (the SCTP_DTLS_CHUNK_KEY key log lines); the capture's .plain.pcap file shows the same packets
-- without protection.

local chunk_proto = Proto("sctp_dtls_chunk", "SCTP DTLS Chunk")
local kmp_proto = Proto("sctp_dtls_kmp", "SCTP DTLS Key Management Parameter")
local km_proto = Proto("sctp_dtls_km", "SCTP DTLS Key Management Message")

local kmids = { [0] = "Pre-shared parameters", [192] = "TLS 1.3", [193] = "DTLS 1.3" }

local c = {
    flags = ProtoField.uint8("sctp_dtls_chunk.flags", "Chunk flags", base.HEX),
    restart = ProtoField.bool("sctp_dtls_chunk.flags.r", "R (restart key context)", 8, nil, 0x01),
    length = ProtoField.uint16("sctp_dtls_chunk.length", "Chunk length", base.DEC),
    prepadding = ProtoField.uint8("sctp_dtls_chunk.pre_padding", "Pre-padding", base.HEX),
    header = ProtoField.uint8("sctp_dtls_chunk.unified_header", "Unified header", base.HEX),
    fixed = ProtoField.uint8("sctp_dtls_chunk.unified_header.fixed", "Fixed bits", base.BIN, nil, 0xE0),
    cid = ProtoField.bool("sctp_dtls_chunk.unified_header.c", "C (connection ID present)", 8, nil, 0x10),
    s16 = ProtoField.bool("sctp_dtls_chunk.unified_header.s", "S (16-bit sequence number)", 8, nil, 0x08),
    lengthPresent = ProtoField.bool("sctp_dtls_chunk.unified_header.l", "L (length present)", 8, nil, 0x04),
    epoch = ProtoField.uint8("sctp_dtls_chunk.epoch", "Epoch (low 2 bits)", base.DEC, nil, 0x03),
    sequence = ProtoField.uint16("sctp_dtls_chunk.encrypted_sequence_number", "Sequence number (encrypted)", base.HEX),
    recordLength = ProtoField.uint16("sctp_dtls_chunk.record_length", "Record length", base.DEC),
    record = ProtoField.bytes("sctp_dtls_chunk.encrypted_record", "Encrypted record"),
    postpadding = ProtoField.bytes("sctp_dtls_chunk.post_padding", "Post-padding"),
}
chunk_proto.fields = { c.flags, c.restart, c.length, c.prepadding, c.header, c.fixed, c.cid, c.s16, c.lengthPresent,
                       c.epoch, c.sequence, c.recordLength, c.record, c.postpadding }

local k = {
    length = ProtoField.uint16("sctp_dtls_kmp.length", "Parameter length", base.DEC),
    tieBreaker = ProtoField.uint32("sctp_dtls_kmp.tie_breaker", "Tie breaker", base.HEX),
    flags = ProtoField.uint8("sctp_dtls_kmp.flags", "Flags", base.HEX),
    restart = ProtoField.bool("sctp_dtls_kmp.flags.r", "R (restart supported)", 8, nil, 0x04),
    server = ProtoField.bool("sctp_dtls_kmp.flags.s", "S (server role supported)", 8, nil, 0x02),
    client = ProtoField.bool("sctp_dtls_kmp.flags.c", "C (client role supported)", 8, nil, 0x01),
    kmid = ProtoField.uint8("sctp_dtls_kmp.kmid", "DTLS KMId", base.DEC, kmids),
}
kmp_proto.fields = { k.length, k.tieBreaker, k.flags, k.restart, k.server, k.client, k.kmid }

local control_types = { [1] = "Protection Established" }

local m = {
    dci = ProtoField.uint8("sctp_dtls_km.dci", "DTLS connection index (low 2 bits)", base.DEC, nil, 0x03),
    pvalid = ProtoField.string("sctp_dtls_km.pvalid", "PVALID"),
    control = ProtoField.bool("sctp_dtls_km.t", "T (control message)", 8, nil, 0x80),
    epoch = ProtoField.uint8("sctp_dtls_km.epoch", "Epoch (low 7 bits)", base.DEC, nil, 0x7f),
    controlType = ProtoField.uint8("sctp_dtls_km.control_type", "Control type", base.DEC, control_types),
}
km_proto.fields = { m.dci, m.pvalid, m.control, m.epoch, m.controlType }

local sctp_field = Field.new("sctp")
local dtls_dissector = Dissector.get("dtls")
local tls_dissector = Dissector.get("tls")

-- Chunk 0x41 at `offset` of `tvb` (the SCTP packet), `length` its Chunk Length.
local function dissect_chunk(tvb, offset, length, tree)
    local padded = length + (4 - length % 4) % 4
    local item = tree:add(chunk_proto, tvb(offset, math.min(padded, tvb:len() - offset)))
    local flags = item:add(c.flags, tvb(offset + 1, 1))
    flags:add(c.restart, tvb(offset + 1, 1))
    item:add(c.length, tvb(offset + 2, 2))
    if length < 6 then
        item:add_expert_info(PI_MALFORMED, PI_ERROR, "chunk too short for a DTLS record")
        return
    end
    item:add(c.prepadding, tvb(offset + 4, 1))
    local at = offset + 5
    local first = tvb(at, 1):uint()
    local header = item:add(c.header, tvb(at, 1))
    header:add(c.fixed, tvb(at, 1))
    header:add(c.cid, tvb(at, 1))
    header:add(c.s16, tvb(at, 1))
    header:add(c.lengthPresent, tvb(at, 1))
    header:add(c.epoch, tvb(at, 1))
    at = at + 1
    if bit.band(first, 0xE0) ~= 0x20 then
        item:add_expert_info(PI_MALFORMED, PI_ERROR, "not a DTLS 1.3 unified header")
    end
    if bit.band(first, 0x10) ~= 0 then
        item:add_expert_info(PI_PROTOCOL, PI_WARN, "connection ID present: the DTLS chunk uses none")
        return
    end
    local sequenceLength = bit.band(first, 0x08) ~= 0 and 2 or 1
    item:add(c.sequence, tvb(at, sequenceLength))
    at = at + sequenceLength
    if bit.band(first, 0x04) ~= 0 then
        item:add(c.recordLength, tvb(at, 2))
        at = at + 2
    end
    local recordEnd = offset + length
    if recordEnd > at then item:add(c.record, tvb(at, recordEnd - at)) end
    if padded > length and offset + padded <= tvb:len() then item:add(c.postpadding, tvb(recordEnd, padded - length)) end
    item:append_text(string.format(", epoch %d%s, %d bytes", bit.band(first, 3),
        bit.band(tvb(offset + 1, 1):uint(), 1) ~= 0 and " (restart)" or "", length))
end

-- Parameter 0x8006 at `offset`, `length` its Parameter Length.
local function dissect_parameter(tvb, offset, length, tree)
    local item = tree:add(kmp_proto, tvb(offset, length))
    item:add(k.length, tvb(offset + 2, 2))
    if length < 9 then
        item:add_expert_info(PI_MALFORMED, PI_ERROR, "parameter too short")
        return
    end
    item:add(k.tieBreaker, tvb(offset + 4, 4))
    local flags = item:add(k.flags, tvb(offset + 8, 1))
    flags:add(k.restart, tvb(offset + 8, 1))
    flags:add(k.server, tvb(offset + 8, 1))
    flags:add(k.client, tvb(offset + 8, 1))
    local names = {}
    for at = offset + 9, offset + length - 1 do
        item:add(k.kmid, tvb(at, 1))
        local id = tvb(at, 1):uint()
        names[#names + 1] = kmids[id] or tostring(id)
    end
    item:append_text(": " .. table.concat(names, ", "))
end

-- The chunks of one SCTP packet (RFC 9260 section 3): the DTLS chunk, and the parameters of INIT
-- (1) and INIT ACK (2), which start 20 bytes into the chunk.
local function dissect_packet(tvb, tree)
    local offset = 12
    while offset + 4 <= tvb:len() do
        local chunkType = tvb(offset, 1):uint()
        local length = tvb(offset + 2, 2):uint()
        if length < 4 then return end
        if chunkType == 0x41 then
            dissect_chunk(tvb, offset, length, tree)
        elseif chunkType == 1 or chunkType == 2 then
            local at = offset + 20
            local chunkEnd = math.min(offset + length, tvb:len())
            while at + 4 <= chunkEnd do
                local parameterType = tvb(at, 2):uint()
                local parameterLength = tvb(at + 2, 2):uint()
                if parameterLength < 4 or at + parameterLength > chunkEnd then break end
                if parameterType == 0x8006 then dissect_parameter(tvb, at, parameterLength, tree) end
                at = at + parameterLength + (4 - parameterLength % 4) % 4
            end
        end
        offset = offset + length + (4 - length % 4) % 4
    end
end

function chunk_proto.dissector(tvb, pinfo, tree)
    for _, sctp in ipairs({ sctp_field() }) do
        local packet = sctp.range:tvb()
        dissect_packet(packet, tree)
    end
end
register_postdissector(chunk_proto)

-- PPID 4242. DTLS 1.3 method: the DCI byte, then DTLS records (or PVALID, "OK", on stream 0).
-- TLS 1.3 method: the T bit and epoch, then TLS records (T = 0) or a control message (T = 1).
function km_proto.dissector(tvb, pinfo, tree)
    local item = tree:add(km_proto, tvb())
    if tvb:len() == 2 and tvb(0, 2):string() == "OK" then
        item:add(m.pvalid, tvb(0, 2))
        return
    end
    if tvb:len() < 2 then return end
    local first = tvb(0, 1):uint()
    if bit.band(first, 0x80) ~= 0 then
        item:add(m.control, tvb(0, 1))
        item:add(m.epoch, tvb(0, 1))
        item:add(m.controlType, tvb(1, 1))
        return
    end
    if tvb:len() >= 3 and tvb(2, 1):uint() == 0x03 then
        item:add(m.control, tvb(0, 1))
        item:add(m.epoch, tvb(0, 1))
        if tls_dissector then tls_dissector:call(tvb(1):tvb(), pinfo, tree) end
        return
    end
    item:add(m.dci, tvb(0, 1))
    if dtls_dissector then dtls_dissector:call(tvb(1):tvb(), pinfo, tree) end
end
DissectorTable.get("sctp.ppi"):add(4242, km_proto)
