// Package xzdec decompresses xz streams held in memory, with the filter
// chains the kernel's boot image uses (x86 BCJ then LZMA2) and the lone
// LZMA2 filter update packs use.
//
// The kernel's payload is compressed by scripts/xz_wrap.sh as
// `xz --check=crc32 --x86 --lzma2=dict=32MiB`. github.com/ulikunitz/xz's
// stream reader accepts only a lone LZMA2 filter, and it allocates whatever
// dictionary a block header declares (up to 4 GiB, from a pack of a few
// dozen bytes); so this package reads the xz container itself (stream
// header, block headers, index, footer; see the .xz file format
// specification), checks every size against the caller's limit and
// MaxDict before it allocates, hands the LZMA2 data to ulikunitz's raw
// LZMA2 reader and undoes the BCJ filter with its own decoder (bcj.go).
// Its output grows with the data actually decoded, so a stream whose index
// declares more than it holds costs what it holds.
//
// testdata holds the oracle: inputs and outputs of XZ Utils 5.4.1
// (testdata/make.sh remakes them).
package xzdec
