"""Pack FSDD as lossless FLAC (smaller than xz of the WAVs) with the WAVs' SHA-256 sums.

Usage: python fsdd_pack.py SRC_DIR OUT.tar.xz   (SRC_DIR holds recordings/ and README.md)
The tar holds recordings/*.flac, README.md and SHA256SUMS (of the original WAV files);
fsdd_unpack.py turns it back into byte-identical WAVs and checks every sum.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
from pathlib import Path

import soundfile as sf


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(payload))


def main() -> int:
    """Write OUT_TAR; return 0, or 1 when a WAV would not come back byte-identical."""
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    wavs = sorted((src / "recordings").glob("*.wav"))
    sums = []
    with tarfile.open(out, "w:xz", preset=6) as tar:  # xz: the 3000 tar headers
        for wav in wavs:
            raw = wav.read_bytes()
            data, rate = sf.read(io.BytesIO(raw), dtype="int16")
            rebuilt = io.BytesIO()
            sf.write(rebuilt, data, rate, subtype="PCM_16", format="WAV")
            if rebuilt.getvalue() != raw:
                print(f"{wav}: a decoded WAV would differ from the original", file=sys.stderr)
                return 1
            flac = io.BytesIO()
            sf.write(flac, data, rate, subtype="PCM_16", format="FLAC", compression_level=1.0)
            _add(tar, f"recordings/{wav.stem}.flac", flac.getvalue())
            sums.append(f"{hashlib.sha256(raw).hexdigest()}  recordings/{wav.name}\n")
        for extra in ("README.md", "LICENSE", "LICENSE.md"):
            if (src / extra).is_file():
                _add(tar, extra, (src / extra).read_bytes())
        _add(tar, "SHA256SUMS", "".join(sums).encode())
    print(f"{out}: {len(wavs)} clips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
