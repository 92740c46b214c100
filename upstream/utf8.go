package upstream

import "unicode/utf8"

// replacement is U+FFFD REPLACEMENT CHARACTER in UTF-8.
const replacement = "\uFFFD"

// appendUTF8 appends b to dst as the Encoding standard's "UTF-8 decode"
// with replacement would produce it: valid sequences are kept, and each
// maximal subpart of an ill-formed sequence becomes one U+FFFD. Go's own
// strings.ToValidUTF8 collapses whole runs instead, which is not what a
// browser shows, so a device would see different data than we stored.
//
// Line terminators are ASCII and never part of a subpart, so decoding line
// by line gives the same text as decoding the whole stream at once.
func appendUTF8(dst, b []byte) []byte {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || size > 1 {
			dst = append(dst, b[i:i+size]...)
			i += size
			continue
		}
		dst = append(dst, replacement...)
		i += maximalSubpart(b[i:])
	}
	return dst
}

// maximalSubpart returns the length of the ill-formed sequence at the start
// of b that the decoder replaces with a single U+FFFD: the lead byte plus
// every following byte that still fits the expected ranges, per the
// Encoding standard's UTF-8 decoder (bytes needed, lower and upper boundary).
func maximalSubpart(b []byte) int {
	lead := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case lead >= 0xC2 && lead <= 0xDF:
		need = 1
	case lead == 0xE0:
		need, lo = 2, 0xA0
	case lead == 0xED:
		need, hi = 2, 0x9F
	case lead >= 0xE1 && lead <= 0xEF:
		need = 2
	case lead == 0xF0:
		need, lo = 3, 0x90
	case lead == 0xF4:
		need, hi = 3, 0x8F
	case lead >= 0xF1 && lead <= 0xF3:
		need = 3
	default:
		return 1
	}
	n := 1
	for ; n <= need && n < len(b); n++ {
		if b[n] < lo || b[n] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
	}
	return n
}
