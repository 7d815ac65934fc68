#!/bin/sh
# Remakes the xz test inputs with XZ Utils (the oracle for the package's
# xz container reader and x86 BCJ decoder). code.bin is 16 KiB of Debian's
# 6.1.0-56-amd64 text at link addresses, mixed.bin 8 KiB of bytes drawn
# mostly from E8, E9, 00 and FF to exercise the filter's corner cases.
#   ./make.sh VMLINUX.BIN   (the ELF from `xz -d` of the bzImage payload)
set -e
[ -n "$1" ] && dd if="$1" of=code.bin bs=4096 skip=$((0x200000/4096 + 1024)) count=4 2>/dev/null
python3 -c '
import random
r = random.Random(1)
b = bytes(r.choice([0xE8, 0xE9, 0x00, 0xFF, r.randrange(256)]) for _ in range(8192))
open("mixed.bin", "wb").write(b)'
x() { out=$1; in=$2; shift 2; xz --format=xz "$@" -c "$in" > "$out"; }
x code.x86.xz code.bin --check=crc32 --x86 --lzma2=dict=32MiB
x mixed.x86.xz mixed.bin --check=crc32 --x86 --lzma2
x mixed.x86-start.xz mixed.bin --check=crc32 --x86=start=4660 --lzma2
x code.crc64.xz code.bin --check=crc64 --lzma2
x code.sha256-blocks.xz code.bin --check=sha256 --block-size=4096 --x86 --lzma2
x code.none.xz code.bin --check=none --x86 --lzma2
x code.delta.xz code.bin --check=crc32 --delta --lzma2
