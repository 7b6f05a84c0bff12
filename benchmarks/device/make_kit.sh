#!/usr/bin/env bash
# Build .devkit/ (git-ignored) for the GPU machine: the packages its image lacks, pre-installed
# and packed as one site-cpXY.tar.xz, plus FSDD as lossless FLAC. See benchmarks/device/README.md.
#
# Usage (repo root or anywhere): benchmarks/device/make_kit.sh [--python-version 3.12] [--strip]
#   --python-version  the device's Python (3.12 there; 3.11 to emulate on this machine)
#   --strip           drop the symbol tables of Ray's three ELF binaries (about 2.5 MiB less
#                     packed; Ray's crash backtraces then lose function names)
# Env: PIP="python3 -m pip" (any pip that reaches the package index),
#      FSDD_SRC=../shared/data/fsdd, FSDD_PY=.venv/bin/python (a Python with soundfile here).
set -euo pipefail

PYVER=3.12
STRIP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --python-version) PYVER="$2"; shift 2 ;;
        --strip) STRIP=1; shift ;;
        *) echo "make_kit.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
KIT="$REPO/.devkit"
PIP="${PIP:-python3 -m pip}"
FSDD_SRC="${FSDD_SRC:-$REPO/../shared/data/fsdd}"
FSDD_PY="${FSDD_PY:-$REPO/.venv/bin/python}"
TAG="cp${PYVER/./}"
LIMIT_MIB=60
# pip matches manylinux_2_N exactly, so name every N the wheels of the list use
PLATFORMS=""
for p in manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_28_x86_64 \
    manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
    manylinux1_x86_64; do
    PLATFORMS="$PLATFORMS --platform $p"
done
TARGET_FLAGS="--only-binary=:all: --python-version $PYVER --implementation cp $PLATFORMS"

WORK="$(mktemp -d /tmp/devkit-build.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/wheels" "$WORK/site" "$KIT"

# 1. wheels: binary where PyPI has them; fvcore and iopath are sdist-only (pure Python), so
#    they are built here into py3-none-any wheels
mapfile -t REQS < <(grep -v '^\s*#' "$HERE/kit-requirements.txt" | grep -v '^\s*$')
SDIST_ONLY=(fvcore iopath)
BINARY=()
BUILT=()
for req in "${REQS[@]}"; do
    name="${req%%==*}"
    if printf '%s\n' "${SDIST_ONLY[@]}" | grep -qx "$name"; then BUILT+=("$req"); else BINARY+=("$req"); fi
done
echo "== downloading ${#BINARY[@]} wheels for $TAG"
# shellcheck disable=SC2086
$PIP download -q --no-deps $TARGET_FLAGS -d "$WORK/wheels" "${BINARY[@]}"
echo "== building ${#BUILT[@]} pure-Python wheels: ${BUILT[*]}"
$PIP wheel -q --no-deps -w "$WORK/wheels" "${BUILT[@]}"
for w in "$WORK"/wheels/*.whl; do
    unzip -tq "$w" >/dev/null || { echo "make_kit.sh: $w is not a valid zip" >&2; exit 1; }
done
N_WHEELS=$(ls "$WORK"/wheels/*.whl | wc -l)
if [ "$N_WHEELS" -ne "${#REQS[@]}" ]; then
    echo "make_kit.sh: ${#REQS[@]} requirements but $N_WHEELS wheels" >&2
    exit 1
fi

# 2. install them into one site folder for the target Python (no .pyc: they would be this
#    machine's Python's), then drop what Ray Tune never loads
echo "== installing into a $TAG site folder"
# shellcheck disable=SC2086
$PIP install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
    $TARGET_FLAGS "$WORK"/wheels/*.whl
RAY="$WORK/site/ray"
rm -rf "$RAY/jars" "$RAY/rllib" "$RAY/serve" "$RAY/llm" "$RAY/dashboard/client/build" \
    "$RAY/tune/examples" "$RAY/train/examples" "$RAY/data/examples"
find "$WORK/site" -name '__pycache__' -type d -prune -exec rm -rf {} +
if [ "$STRIP" = 1 ]; then
    # .symtab only (the wheels carry no debug sections); .dynsym, which the loader needs, stays
    for f in "$RAY/_raylet.so" "$RAY/core/src/ray/gcs/gcs_server" "$RAY/core/src/ray/raylet/raylet"; do
        strip --strip-all "$f"
    done
fi
ls "$WORK"/wheels/ > "$WORK/site/DEVKIT_WHEELS.txt"
echo "== packing site-$TAG.tar.xz"
rm -f "$KIT"/site-*.tar.xz
tar -C "$WORK/site" -cf - . | xz -T2 -6 > "$KIT/site-$TAG.tar.xz"

# 3. FSDD: FLAC (lossless, checked byte-identical on the way in and out) beats xz of the WAVs
rm -f "$KIT/fsdd.tar"
if [ ! -f "$KIT/fsdd.tar.xz" ] || [ "$FSDD_SRC/recordings" -nt "$KIT/fsdd.tar.xz" ]; then
    echo "== packing FSDD from $FSDD_SRC"
    "$FSDD_PY" "$HERE/fsdd_pack.py" "$FSDD_SRC" "$KIT/fsdd.tar.xz"
fi

# 4. size: what travels to the device is the tracked tree, untracked-not-ignored files and the
#    carried .devkit; the tool refuses over 64 MiB, the kit keeps a margin
tree_b=$(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
    | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
kit_b=$(du -sb "$KIT" | cut -f1)
total_mib=$(( (tree_b + kit_b) / 1048576 ))
echo "== .devkit contents:"
ls -l "$KIT"
printf '== .devkit %.1f MiB + working tree %.1f MiB = %d MiB (limit %d)\n' \
    "$(echo "$kit_b / 1048576" | bc -l)" "$(echo "$tree_b / 1048576" | bc -l)" "$total_mib" "$LIMIT_MIB"
if [ $(( tree_b + kit_b )) -gt $(( LIMIT_MIB * 1048576 )) ]; then
    echo "make_kit.sh: tree + .devkit exceed $LIMIT_MIB MiB" >&2
    exit 1
fi
