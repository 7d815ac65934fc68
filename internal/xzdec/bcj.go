package xzdec

import "encoding/binary"

// The x86 BCJ ("branch/call/jump") filter of the xz format makes x86 code
// compress better: the encoder finds what look like CALL rel32 (E8) and
// JMP rel32 (E9) instructions and replaces their 32-bit relative
// displacement by the absolute target (displacement + address of the next
// instruction), so that repeated calls to one function become repeated byte
// strings. The decoder undoes this. Because the filter does not disassemble,
// it uses heuristics that the decoder must reproduce exactly:
//
//   - Only operands whose most significant byte is 0x00 or 0xFF (a
//     displacement within ±16 MiB) are converted.
//   - The filter remembers which of the three bytes before the current
//     opcode were themselves E8/E9 opcodes that were not converted (the
//     "previous mask", bit k-1 for the byte k positions back). An opcode
//     whose operand bytes overlap such recent opcodes is only converted in
//     some of these situations, and the operand byte that overlaps them is
//     tested as well.
//   - When converting, the encoder may have produced a value whose byte at
//     the position of an earlier unconverted opcode looks like another
//     convertible operand; it then flipped the low bits and converted
//     again. The decoder repeats that loop on its side.
//   - The converted value is stored sign-extended from bit 24, so the top
//     byte is again 0x00 or 0xFF.
//
// The state does not carry across xz blocks: every block starts afresh at
// the filter's start offset.

// bcjMaskAllowed says, for a 3-bit previous mask, whether an opcode with
// that history may be converted at all.
var bcjMaskAllowed = [8]bool{true, true, true, false, true, false, false, false}

// bcjMaskByte gives, for a 3-bit previous mask, which operand byte (counted
// from the most significant, 0..3) overlaps the oldest recent opcode.
var bcjMaskByte = [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}

// bcjMSByte reports whether b can be the most significant byte of a short
// displacement.
func bcjMSByte(b byte) bool { return b == 0x00 || b == 0xFF }

// bcjX86Decode reverses the x86 BCJ filter over buf in place. start is the
// filter's start offset (the uncompressed position of buf[0], normally 0).
// The last four bytes of buf can never begin an instruction the filter
// converted and are left as they are.
func bcjX86Decode(buf []byte, start uint32) {
	if len(buf) < 5 {
		return
	}
	var mask uint32  // bit k-1: the opcode k bytes back was not converted
	last := -1 << 30 // position of the previous E8/E9 opcode, far away at first
	end := len(buf) - 4
	for i := 0; i < end; i++ {
		if buf[i] != 0xE8 && buf[i] != 0xE9 {
			continue
		}
		dist := i - last
		last = i
		if dist > 3 {
			mask = 0
		} else {
			mask = (mask << (dist - 1)) & 7
			if mask != 0 && (!bcjMaskAllowed[mask] || bcjMSByte(buf[i+4-int(bcjMaskByte[mask])])) {
				// Too close to unconverted opcodes: left alone.
				mask = mask<<1 | 1
				continue
			}
		}
		if !bcjMSByte(buf[i+4]) {
			mask = mask<<1 | 1
			continue
		}
		v := binary.LittleEndian.Uint32(buf[i+1:])
		next := start + uint32(i) + 5
		var rel uint32
		for {
			rel = v - next
			if mask == 0 {
				break
			}
			shift := 24 - 8*bcjMaskByte[mask]
			if !bcjMSByte(byte(rel >> shift)) {
				break
			}
			v = rel ^ (1<<(shift+8) - 1)
		}
		// Sign-extend from bit 24.
		rel &= 0x01FFFFFF
		if rel&0x01000000 != 0 {
			rel |= 0xFF000000
		}
		binary.LittleEndian.PutUint32(buf[i+1:], rel)
		i += 4
	}
}
