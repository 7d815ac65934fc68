package differ

import (
	"bytes"
	"debug/dwarf"
	"encoding/binary"
	"errors"
	"fmt"
)

// dieReader walks the entries of a relocated .debug_info in order,
// decoding only the attributes readTypes uses into one reused die:
// debug/dwarf's Reader allocates every entry and its fields, which was
// most of a Diff's time and memory. It reads DWARF 2 to 5 units of the
// standard forms and GNU's; anything else is an error naming the file.
type dieReader struct {
	file                                string // for errors
	info, abbrev, str, lineStr, strOffs []byte
	pos                                 int // offset of the next entry
	unit                                unit
	abbrevs                             map[uint64][]abbrev // by .debug_abbrev offset
	die                                 die
}

// unit is the compilation unit the reader is in.
type unit struct {
	base, end       int // offset of the unit header, end of the unit
	version         int
	offSize         int // 4 or 8 (64-bit DWARF)
	addrSize        int
	strOffsetsBase  uint64
	abbrevs         []abbrev // by code
	hasStrOffsBase  bool
	firstEntryAfter int // offset just past the unit header
}

// abbrev is one abbreviation declaration.
type abbrev struct {
	tag      dwarf.Tag
	children bool
	attrs    []abbrevAttr
	defined  bool
}

type abbrevAttr struct {
	attr     dwarf.Attr
	form     uint64
	implicit int64 // DW_FORM_implicit_const
}

// die is what readTypes needs of one entry; a Tag of 0 is a null entry
// (the end of a list of children).
type die struct {
	off      dwarf.Offset
	tag      dwarf.Tag
	children bool
	name     []byte // nil without a name
	typ      dwarf.Offset
	hasType  bool
	decl     bool
	external bool
	byteSize int64
	sibling  dwarf.Offset
	hasSib   bool
	// memberLoc and bitOffset are a member's offsets (memberOffset,
	// bitOffset); constValue, count and upperBound are the values
	// debug/dwarf gives DW_AT_const_value, DW_AT_count and
	// DW_AT_upper_bound (int64, []byte, string, bool), nil without.
	memberLoc, bitOffset          int64
	constValue, count, upperBound any
}

// DWARF form codes (DWARF 5 section 7.5.6, and GNU extensions).
const (
	formAddr          = 0x01
	formBlock2        = 0x03
	formBlock4        = 0x04
	formData2         = 0x05
	formData4         = 0x06
	formData8         = 0x07
	formString        = 0x08
	formBlock         = 0x09
	formBlock1        = 0x0a
	formData1         = 0x0b
	formFlag          = 0x0c
	formSdata         = 0x0d
	formStrp          = 0x0e
	formUdata         = 0x0f
	formRefAddr       = 0x10
	formRef1          = 0x11
	formRef2          = 0x12
	formRef4          = 0x13
	formRef8          = 0x14
	formRefUdata      = 0x15
	formIndirect      = 0x16
	formSecOffset     = 0x17
	formExprloc       = 0x18
	formFlagPresent   = 0x19
	formStrx          = 0x1a
	formAddrx         = 0x1b
	formRefSup4       = 0x1c
	formStrpSup       = 0x1d
	formData16        = 0x1e
	formLineStrp      = 0x1f
	formRefSig8       = 0x20
	formImplicitConst = 0x21
	formLoclistx      = 0x22
	formRnglistx      = 0x23
	formRefSup8       = 0x24
	formStrx1         = 0x25
	formStrx2         = 0x26
	formStrx3         = 0x27
	formStrx4         = 0x28
	formAddrx1        = 0x29
	formAddrx2        = 0x2a
	formAddrx3        = 0x2b
	formAddrx4        = 0x2c
	formGNUAddrIndex  = 0x1f01
	formGNUStrIndex   = 0x1f02
	formGNURefAlt     = 0x1f20
	formGNUStrpAlt    = 0x1f21
)

var errTruncated = errors.New("truncated")

// cursor reads little-endian DWARF values from b at pos.
type cursor struct {
	b   []byte
	pos int
	err error
}

func (c *cursor) bytes(n int) []byte {
	if c.err != nil || n < 0 || n > len(c.b)-c.pos {
		c.err = errTruncated
		return nil
	}
	b := c.b[c.pos : c.pos+n]
	c.pos += n
	return b
}

func (c *cursor) u8() uint64 {
	if b := c.bytes(1); b != nil {
		return uint64(b[0])
	}
	return 0
}

func (c *cursor) fixed(n int) uint64 {
	b := c.bytes(n)
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func (c *cursor) uleb() uint64 {
	var v uint64
	for shift := 0; ; shift += 7 {
		if c.err != nil || c.pos >= len(c.b) {
			c.err = errTruncated
			return 0
		}
		b := c.b[c.pos]
		c.pos++
		if shift < 64 {
			v |= uint64(b&0x7f) << shift
		}
		if b&0x80 == 0 {
			return v
		}
	}
}

func (c *cursor) sleb() int64 {
	var v int64
	shift := 0
	for {
		if c.err != nil || c.pos >= len(c.b) {
			c.err = errTruncated
			return 0
		}
		b := c.b[c.pos]
		c.pos++
		if shift < 64 {
			v |= int64(b&0x7f) << shift
		}
		shift += 7
		if b&0x80 == 0 {
			if shift < 64 && b&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
}

// cstring returns the NUL-terminated string at the cursor, without the NUL.
func (c *cursor) cstring() []byte {
	if c.err != nil {
		return nil
	}
	i := bytes.IndexByte(c.b[c.pos:], 0)
	if i < 0 {
		c.err = errTruncated
		return nil
	}
	s := c.b[c.pos : c.pos+i]
	c.pos += i + 1
	return s
}

func newDIEReader(file string, info, abbr, str, lineStr, strOffs []byte) *dieReader {
	return &dieReader{file: file, info: info, abbrev: abbr, str: str, lineStr: lineStr, strOffs: strOffs,
		abbrevs: map[uint64][]abbrev{}}
}

func (r *dieReader) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: reading DWARF: "+format, append([]any{r.file}, args...)...)
}

// next reads the next entry into r.die and returns it, nil at the end of
// .debug_info.
func (r *dieReader) next() (*die, error) {
	for r.pos >= r.unit.end {
		if r.pos >= len(r.info) {
			return nil, nil
		}
		if err := r.readUnit(); err != nil {
			return nil, err
		}
	}
	c := cursor{b: r.info[:r.unit.end], pos: r.pos}
	d := &r.die
	*d = die{off: dwarf.Offset(r.pos)}
	code := c.uleb()
	if c.err != nil {
		return nil, r.errorf("entry at %#x: %v", r.pos, c.err)
	}
	if code == 0 {
		r.pos = c.pos
		return d, nil
	}
	if code >= uint64(len(r.unit.abbrevs)) || !r.unit.abbrevs[code].defined {
		return nil, r.errorf("entry at %#x: abbreviation code %d not defined", r.pos, code)
	}
	a := &r.unit.abbrevs[code]
	d.tag, d.children = a.tag, a.children
	for _, at := range a.attrs {
		if err := r.attr(&c, d, at.attr, at.form, at.implicit); err != nil {
			return nil, r.errorf("entry at %#x, attribute %v: %w", d.off, at.attr, err)
		}
	}
	if c.err != nil {
		return nil, r.errorf("entry at %#x: %v", d.off, c.err)
	}
	r.pos = c.pos
	return d, nil
}

// skipChildren leaves the reader after the children of the entry just
// read, if it has any.
func (r *dieReader) skipChildren() error {
	if !r.die.children {
		return nil
	}
	for depth := 1; depth > 0; {
		d, err := r.next()
		if err != nil {
			return err
		}
		if d == nil {
			return r.errorf("children of an entry run past the end of .debug_info")
		}
		switch {
		case d.tag == 0:
			depth--
		case d.children:
			depth++
		}
	}
	return nil
}

// seek moves the reader to the entry at off, which must be in the
// current unit.
func (r *dieReader) seek(off dwarf.Offset) error {
	if int(off) < r.unit.firstEntryAfter || int(off) >= r.unit.end {
		return r.errorf("offset %#x is outside the unit at %#x", off, r.unit.base)
	}
	r.pos = int(off)
	return nil
}

// readUnit reads the unit header at r.pos.
func (r *dieReader) readUnit() error {
	c := cursor{b: r.info, pos: r.pos}
	u := unit{base: r.pos, offSize: 4}
	length := c.fixed(4)
	if length == 0xffffffff {
		u.offSize = 8
		length = c.fixed(8)
	} else if length >= 0xfffffff0 {
		return r.errorf("unit at %#x: reserved length %#x", r.pos, length)
	}
	if c.err != nil || length > uint64(len(r.info)-c.pos) {
		return r.errorf("unit at %#x: length %d runs past .debug_info (%d bytes)", r.pos, length, len(r.info))
	}
	u.end = c.pos + int(length)
	c.b = r.info[:u.end]
	u.version = int(c.fixed(2))
	var abbrevOff uint64
	switch {
	case u.version >= 2 && u.version <= 4:
		abbrevOff = c.fixed(u.offSize)
		u.addrSize = int(c.u8())
	case u.version == 5:
		unitType := c.u8()
		u.addrSize = int(c.u8())
		abbrevOff = c.fixed(u.offSize)
		switch unitType {
		case 0x04, 0x05: // DW_UT_skeleton, DW_UT_split_compile
			c.fixed(8)
		case 0x02, 0x06: // DW_UT_type, DW_UT_split_type
			c.fixed(8)
			c.fixed(u.offSize)
		}
	default:
		return r.errorf("unit at %#x: DWARF version %d not supported", r.pos, u.version)
	}
	if c.err != nil {
		return r.errorf("unit at %#x: header: %v", r.pos, c.err)
	}
	abbrevs, err := r.readAbbrevs(abbrevOff)
	if err != nil {
		return err
	}
	u.abbrevs = abbrevs
	u.firstEntryAfter = c.pos
	r.unit = u
	r.pos = c.pos
	return nil
}

// readAbbrevs reads (once per offset) the abbreviation table at off.
func (r *dieReader) readAbbrevs(off uint64) ([]abbrev, error) {
	if t, ok := r.abbrevs[off]; ok {
		return t, nil
	}
	if off >= uint64(len(r.abbrev)) {
		return nil, r.errorf("abbreviation table offset %#x outside .debug_abbrev (%d bytes)", off, len(r.abbrev))
	}
	c := cursor{b: r.abbrev, pos: int(off)}
	var t []abbrev
	for {
		code := c.uleb()
		if c.err != nil {
			return nil, r.errorf(".debug_abbrev at %#x: %v", off, c.err)
		}
		if code == 0 {
			break
		}
		if code > 1<<20 {
			return nil, r.errorf(".debug_abbrev at %#x: abbreviation code %d too large", off, code)
		}
		a := abbrev{tag: dwarf.Tag(c.uleb()), children: c.u8() != 0, defined: true}
		for {
			at, form := c.uleb(), c.uleb()
			var implicit int64
			if form == formImplicitConst {
				implicit = c.sleb()
			}
			if c.err != nil {
				return nil, r.errorf(".debug_abbrev at %#x: %v", off, c.err)
			}
			if at == 0 && form == 0 {
				break
			}
			a.attrs = append(a.attrs, abbrevAttr{attr: dwarf.Attr(at), form: form, implicit: implicit})
		}
		for uint64(len(t)) <= code {
			t = append(t, abbrev{})
		}
		t[code] = a
	}
	r.abbrevs[off] = t
	return t, nil
}

// value is one attribute value, typed as debug/dwarf's Entry.Val would
// give it (kind), without boxing it in an interface.
type value struct {
	kind valueKind
	i    int64  // vInt
	u    uint64 // vUint
	ref  dwarf.Offset
	flag bool
	b    []byte // vBytes, vString (a slice of the section, not a copy)
}

type valueKind uint8

const (
	vInt    valueKind = iota // int64: constants, section offsets
	vUint                    // uint64: addresses, indices, signatures
	vRef                     // dwarf.Offset
	vBool                    // flags
	vBytes                   // []byte: blocks, expressions, data16
	vString                  // string
)

// boxed returns v as debug/dwarf's Entry.Val does.
func (v value) boxed() any {
	switch v.kind {
	case vInt:
		return v.i
	case vUint:
		return v.u
	case vRef:
		return v.ref
	case vBool:
		return v.flag
	case vString:
		return string(v.b)
	}
	return append([]byte(nil), v.b...)
}

// attr reads one attribute value of form at c, keeping it in d when
// readTypes uses attribute at.
func (r *dieReader) attr(c *cursor, d *die, at dwarf.Attr, form uint64, implicit int64) error {
	v, err := r.value(c, form, implicit)
	if err != nil {
		return err
	}
	if c.err != nil {
		return c.err
	}
	switch at {
	case dwarf.AttrName:
		if v.kind == vString {
			d.name = v.b
		}
	case dwarf.AttrType:
		d.typ, d.hasType = v.ref, v.kind == vRef
	case dwarf.AttrDeclaration:
		d.decl = true // any value: debug/dwarf's Val is non-nil
	case dwarf.AttrExternal:
		d.external = v.kind == vBool && v.flag
	case dwarf.AttrByteSize:
		if v.kind == vInt {
			d.byteSize = v.i
		}
	case dwarf.AttrSibling:
		d.sibling, d.hasSib = v.ref, v.kind == vRef
	case dwarf.AttrDataMemberLoc:
		switch v.kind {
		case vInt:
			d.memberLoc = v.i
		case vBytes:
			d.memberLoc = plusUconst(v.b)
		}
	case dwarf.AttrDataBitOffset, dwarf.AttrBitOffset:
		if v.kind == vInt {
			d.bitOffset += v.i
		}
	case dwarf.AttrConstValue:
		d.constValue = v.boxed()
	case dwarf.AttrCount:
		d.count = v.boxed()
	case dwarf.AttrUpperBound:
		d.upperBound = v.boxed()
	case dwarf.AttrStrOffsetsBase:
		if v.kind == vInt {
			r.unit.strOffsetsBase, r.unit.hasStrOffsBase = uint64(v.i), true
		}
	}
	return nil
}

// value reads one value of form at c.
func (r *dieReader) value(c *cursor, form uint64, implicit int64) (value, error) {
	u := &r.unit
	switch form {
	case formIndirect:
		return r.value(c, c.uleb(), implicit)
	case formAddr:
		return value{kind: vUint, u: c.fixed(u.addrSize)}, nil
	case formAddrx, formGNUAddrIndex, formLoclistx, formRnglistx:
		return value{kind: vUint, u: c.uleb()}, nil
	case formAddrx1, formAddrx2, formAddrx3, formAddrx4:
		return value{kind: vUint, u: c.fixed(int(form-formAddrx1) + 1)}, nil
	case formBlock1:
		return value{kind: vBytes, b: c.bytes(int(c.u8()))}, nil
	case formBlock2:
		return value{kind: vBytes, b: c.bytes(int(c.fixed(2)))}, nil
	case formBlock4:
		return value{kind: vBytes, b: c.bytes(int(c.fixed(4)))}, nil
	case formBlock, formExprloc:
		return value{kind: vBytes, b: c.bytes(int(c.uleb()))}, nil
	case formData16:
		return value{kind: vBytes, b: c.bytes(16)}, nil
	case formData1:
		return value{kind: vInt, i: int64(c.u8())}, nil
	case formData2:
		return value{kind: vInt, i: int64(c.fixed(2))}, nil
	case formData4:
		return value{kind: vInt, i: int64(c.fixed(4))}, nil
	case formData8:
		return value{kind: vInt, i: int64(c.fixed(8))}, nil
	case formSdata:
		return value{kind: vInt, i: c.sleb()}, nil
	case formUdata:
		return value{kind: vInt, i: int64(c.uleb())}, nil
	case formImplicitConst:
		return value{kind: vInt, i: implicit}, nil
	case formSecOffset, formGNURefAlt, formGNUStrpAlt, formStrpSup:
		return value{kind: vInt, i: int64(c.fixed(u.offSize))}, nil
	case formFlag:
		return value{kind: vBool, flag: c.u8() != 0}, nil
	case formFlagPresent:
		return value{kind: vBool, flag: true}, nil
	case formRef1:
		return value{kind: vRef, ref: dwarf.Offset(uint64(u.base) + c.fixed(1))}, nil
	case formRef2:
		return value{kind: vRef, ref: dwarf.Offset(uint64(u.base) + c.fixed(2))}, nil
	case formRef4:
		return value{kind: vRef, ref: dwarf.Offset(uint64(u.base) + c.fixed(4))}, nil
	case formRef8:
		return value{kind: vRef, ref: dwarf.Offset(uint64(u.base) + c.fixed(8))}, nil
	case formRefUdata:
		return value{kind: vRef, ref: dwarf.Offset(uint64(u.base) + c.uleb())}, nil
	case formRefAddr:
		n := u.offSize
		if u.version == 2 {
			n = u.addrSize
		}
		return value{kind: vRef, ref: dwarf.Offset(c.fixed(n))}, nil
	case formRefSig8, formRefSup8:
		return value{kind: vUint, u: c.fixed(8)}, nil // a type signature, not an offset
	case formRefSup4:
		return value{kind: vUint, u: c.fixed(4)}, nil
	case formString:
		return value{kind: vString, b: c.cstring()}, nil
	case formStrp, formLineStrp:
		off := c.fixed(u.offSize)
		sec := r.str
		if form == formLineStrp {
			sec = r.lineStr
		}
		s, err := cstringAt(sec, off)
		return value{kind: vString, b: s}, err
	case formStrx, formGNUStrIndex, formStrx1, formStrx2, formStrx3, formStrx4:
		var idx uint64
		if form == formStrx || form == formGNUStrIndex {
			idx = c.uleb()
		} else {
			idx = c.fixed(int(form-formStrx1) + 1)
		}
		s, err := r.strx(idx)
		return value{kind: vString, b: s}, err
	}
	return value{}, fmt.Errorf("form %#x not supported", form)
}

// strx returns string idx of the unit's string offsets table.
func (r *dieReader) strx(idx uint64) ([]byte, error) {
	u := &r.unit
	base := u.strOffsetsBase
	if !u.hasStrOffsBase {
		base = 8 // the first table's header (DWARF 5 section 7.26)
		if u.offSize == 8 {
			base = 16
		}
	}
	n := uint64(u.offSize)
	at := base + idx*n
	if idx > uint64(len(r.strOffs)) || at+n > uint64(len(r.strOffs)) {
		return nil, fmt.Errorf("string index %d outside .debug_str_offsets (%d bytes)", idx, len(r.strOffs))
	}
	var off uint64
	if n == 8 {
		off = binary.LittleEndian.Uint64(r.strOffs[at:])
	} else {
		off = uint64(binary.LittleEndian.Uint32(r.strOffs[at:]))
	}
	return cstringAt(r.str, off)
}

func cstringAt(sec []byte, off uint64) ([]byte, error) {
	if off >= uint64(len(sec)) {
		return nil, fmt.Errorf("string offset %#x outside its section (%d bytes)", off, len(sec))
	}
	i := bytes.IndexByte(sec[off:], 0)
	if i < 0 {
		return nil, fmt.Errorf("string at %#x is not terminated", off)
	}
	return sec[off : off+uint64(i)], nil
}

// plusUconst decodes a DW_OP_plus_uconst location, as old DWARF writes
// member offsets; 0 for any other expression.
func plusUconst(v []byte) int64 {
	if len(v) > 1 && v[0] == 0x23 {
		var off int64
		for i, shift := 1, 0; i < len(v); i, shift = i+1, shift+7 {
			off |= int64(v[i]&0x7f) << shift
			if v[i]&0x80 == 0 {
				break
			}
		}
		return off
	}
	return 0
}
