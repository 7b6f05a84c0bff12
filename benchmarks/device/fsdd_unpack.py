"""Unpack fsdd.tar.xz (from fsdd_pack.py) into DEST/recordings/*.wav and check every SHA-256.

Usage: python fsdd_unpack.py FSDD_TAR_XZ DEST   (needs soundfile: the kit's site folder)
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
from pathlib import Path

import soundfile as sf


def main() -> int:
    """Write the WAVs; return 0 when all match SHA256SUMS, else 1."""
    src, dest = Path(sys.argv[1]), Path(sys.argv[2])
    (dest / "recordings").mkdir(parents=True, exist_ok=True)
    sums: dict[str, str] = {}
    written = 0
    with tarfile.open(src) as tar:
        for member in tar:
            payload = tar.extractfile(member)
            if payload is None:
                continue
            raw = payload.read()
            if member.name == "SHA256SUMS":
                for line in raw.decode().splitlines():
                    digest, name = line.split(maxsplit=1)
                    sums[name] = digest
            elif member.name.endswith(".flac"):
                data, rate = sf.read(io.BytesIO(raw), dtype="int16")
                wav = io.BytesIO()
                sf.write(wav, data, rate, subtype="PCM_16", format="WAV")
                name = member.name[: -len(".flac")] + ".wav"
                (dest / name).write_bytes(wav.getvalue())
                written += 1
            else:
                (dest / member.name).write_bytes(raw)
    bad = [n for n, d in sums.items() if hashlib.sha256((dest / n).read_bytes()).hexdigest() != d]
    if bad or written != len(sums):
        print(
            f"fsdd unpack: {written} written, {len(sums)} listed, {len(bad)} differ: {bad[:5]}",
            file=sys.stderr,
        )
        return 1
    print(f"fsdd unpack: {written} WAVs in {dest / 'recordings'}, all SHA-256 sums match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
