"""The CUDA caching-allocator simulation: hand-derived sequences, properties, the estimator.

Each hand-made test derives its totals from the rules of ``c10/cuda/CUDACachingAllocator.cpp``
(torch 2.11–2.14 defaults) in a comment: requests are rounded to 512 B; <= 1 MiB is the small
pool (2 MiB segments), below 10 MiB a 20 MiB segment, else the request rounded to 2 MiB; the
smallest free block that fits is reused (lowest address among equals); a block is split when
the remainder is >= 512 B (small) or > 1 MiB (large); a freed block merges with free
neighbours; only ``empty_cache`` (or a failed ``cudaMalloc``) returns whole free segments.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search_spaces.presets import Preset, list_presets
from trainers.cost_vram import estimate_infer_reserved, estimate_train_vram
from trainers.cuda_allocator import (
    K_LARGE_BUFFER,
    K_SMALL_BUFFER,
    CachingAllocatorSim,
    SimulatedOutOfMemory,
    StepEvents,
    allocation_size,
    carry_pairs,
    round_size,
    simulate_reserved,
)

KiB = 2**10
MiB = 2**20


def _blocks(sim: CachingAllocatorSim) -> list[list[tuple[int, bool]]]:
    return [list(seg.blocks) for seg in sim.segments]


# -- rounding and segment sizes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("nbytes", "rounded"),
    [(1, 512), (512, 512), (513, 1024), (1000, 1024), (MiB, MiB), (MiB + 1, MiB + 512)],
)
def test_round_size_is_512_byte_multiples(nbytes: int, rounded: int) -> None:
    assert round_size(nbytes) == rounded


@pytest.mark.parametrize(
    ("size", "segment"),
    [
        (512, 2 * MiB),  # small pool: kSmallBuffer
        (MiB, 2 * MiB),  # 1 MiB is still small (<= kSmallSize)
        (MiB + 512, 20 * MiB),  # large and < kMinLargeAlloc: kLargeBuffer
        (10 * MiB - 512, 20 * MiB),
        (10 * MiB, 10 * MiB),  # >= 10 MiB: rounded up to kRoundLarge (2 MiB)
        (11 * MiB, 12 * MiB),
        (12 * MiB, 12 * MiB),
        (12 * MiB + 512, 14 * MiB),
    ],
)
def test_allocation_size(size: int, segment: int) -> None:
    assert allocation_size(size) == segment


# -- hand-derived sequences --------------------------------------------------------------------


def test_small_requests_pack_into_one_2mib_segment() -> None:
    # 4 × 1000 B → 4 × 1024 B blocks split off one 2 MiB small segment (each remainder is
    # >= 512 B, so each request splits the free tail): reserved 2 MiB, allocated 4 KiB.
    sim = CachingAllocatorSim()
    for _ in range(4):
        sim.malloc(1000)
    assert sim.reserved_bytes == 2 * MiB
    assert sim.allocated_bytes == 4 * KiB
    assert _blocks(sim) == [[(KiB, True)] * 4 + [(2 * MiB - 4 * KiB, False)]]
    assert sim.segments[0].is_small


def test_two_1mib_requests_share_a_small_segment_a_third_opens_another() -> None:
    # 1 MiB is small (<= kSmallSize): segment 2 MiB, remainder 1 MiB >= 512 B → split; the
    # second 1 MiB takes that remainder exactly (no split, nothing left); the third finds no
    # free small block → a second 2 MiB segment. Reserved 4 MiB, allocated 3 MiB.
    sim = CachingAllocatorSim()
    for _ in range(3):
        sim.malloc(MiB)
    assert sim.reserved_bytes == 4 * MiB
    assert sim.allocated_bytes == 3 * MiB
    assert _blocks(sim) == [[(MiB, True), (MiB, True)], [(MiB, True), (MiB, False)]]


def test_small_and_large_pools_do_not_share_segments() -> None:
    # 1000 B → small pool, 2 MiB segment. 1.5 MiB → large pool: the small segment's free
    # 2 MiB - 1 KiB is never offered to it; a new 20 MiB segment. Reserved 22 MiB.
    sim = CachingAllocatorSim()
    sim.malloc(1000)
    sim.malloc(3 * MiB // 2)
    assert sim.reserved_bytes == 22 * MiB
    assert [seg.is_small for seg in sim.segments] == [True, False]


def test_1_5mib_request_gets_a_20mib_segment_and_splits_it() -> None:
    # 1.5 MiB (1 MiB < size < 10 MiB) → cudaMalloc kLargeBuffer = 20 MiB; remainder
    # 18.5 MiB > 1 MiB → split. Reserved 20 MiB, allocated 1.5 MiB.
    sim = CachingAllocatorSim()
    sim.malloc(3 * MiB // 2)
    assert sim.reserved_bytes == K_LARGE_BUFFER
    assert sim.allocated_bytes == 3 * MiB // 2
    assert _blocks(sim) == [[(3 * MiB // 2, True), (37 * MiB // 2, False)]]
    # a 12 MiB request fits the 18.5 MiB remainder (best fit), no new segment
    sim.malloc(12 * MiB)
    assert sim.reserved_bytes == 20 * MiB
    assert sim.num_segments == 1


def test_12mib_request_gets_an_exact_12mib_segment() -> None:
    # 12 MiB >= kMinLargeAlloc → segment rounded to 2 MiB = 12 MiB, remainder 0, not split.
    sim = CachingAllocatorSim()
    sim.malloc(12 * MiB)
    assert sim.reserved_bytes == 12 * MiB
    assert _blocks(sim) == [[(12 * MiB, True)]]


def test_large_block_not_split_when_remainder_at_most_1mib() -> None:
    # 11 MiB → segment 12 MiB; remainder exactly 1 MiB is not > kSmallSize → no split; the
    # request holds (and allocated counts) the whole 12 MiB block.
    sim = CachingAllocatorSim()
    sim.malloc(11 * MiB)
    assert sim.reserved_bytes == 12 * MiB
    assert sim.allocated_bytes == 12 * MiB
    assert _blocks(sim) == [[(12 * MiB, True)]]
    # 10.5 MiB → segment 12 MiB (rounded), remainder 1.5 MiB > 1 MiB → split
    sim.malloc(21 * MiB // 2)
    assert sim.reserved_bytes == 24 * MiB
    assert sim.allocated_bytes == 12 * MiB + 21 * MiB // 2
    assert _blocks(sim)[1] == [(21 * MiB // 2, True), (3 * MiB // 2, False)]


def test_split_then_reuse_after_free() -> None:
    # 1.5 MiB → 20 MiB segment split [1.5 used | 18.5 free]; free → merges with the free
    # remainder into one 20 MiB free block; a 5 MiB request reuses it (split again):
    # reserved stays 20 MiB, one cudaMalloc in all.
    sim = CachingAllocatorSim()
    a = sim.malloc(3 * MiB // 2)
    sim.free(a)
    assert _blocks(sim) == [[(20 * MiB, False)]]
    assert sim.allocated_bytes == 0
    assert sim.reserved_bytes == 20 * MiB
    sim.malloc(5 * MiB)
    assert sim.reserved_bytes == 20 * MiB
    assert sim.num_device_alloc == 1
    assert _blocks(sim) == [[(5 * MiB, True), (15 * MiB, False)]]


def test_best_fit_takes_the_smallest_free_block_that_fits() -> None:
    # Three exact segments 12, 14, 16 MiB (>= 10 MiB, 2 MiB multiples), all freed. A 13 MiB
    # request: smallest free block >= 13 MiB is the 14 MiB one (not the first, not the
    # largest); remainder 1 MiB → not split, allocated 14 MiB. A 12 MiB request: the 12 MiB
    # block. Another 12 MiB: only the 16 MiB block is left; remainder 4 MiB > 1 MiB → split.
    # Reserved stays 42 MiB throughout.
    sim = CachingAllocatorSim()
    handles = [sim.malloc(n * MiB) for n in (12, 14, 16)]
    for h in handles:
        sim.free(h)
    seg12, seg14, seg16 = (seg.address for seg in sim.segments)
    h13 = sim.malloc(13 * MiB)
    assert sim.block_of(h13) == (seg14, 14 * MiB)
    h12 = sim.malloc(12 * MiB)
    assert sim.block_of(h12) == (seg12, 12 * MiB)
    h12b = sim.malloc(12 * MiB)
    assert sim.block_of(h12b) == (seg16, 12 * MiB)
    assert sim.reserved_bytes == 42 * MiB
    assert sim.allocated_bytes == (14 + 12 + 12) * MiB
    assert _blocks(sim)[2] == [(12 * MiB, True), (4 * MiB, False)]


def test_best_fit_breaks_ties_by_lowest_address() -> None:
    # Two equal 12 MiB free segments: the one at the lower address is taken.
    sim = CachingAllocatorSim()
    a, b = sim.malloc(12 * MiB), sim.malloc(12 * MiB)
    low = sim.block_of(a)[0]
    sim.free(b)
    sim.free(a)
    assert sim.block_of(sim.malloc(12 * MiB))[0] == low


def test_freed_neighbours_coalesce_within_a_segment() -> None:
    # One 20 MiB segment cut into [a 2 | b 2 | c 2 | free 14]. free(b): neighbours a, c are
    # allocated → [a | free 2 | c | free 14]. free(a): merges with the free 2 → [free 4 | c |
    # free 14]; a 4 MiB request now fits that merged block exactly (best fit 4 < 14, remainder
    # 0 → not split) and no segment is added. free it and c: all merge → [free 20].
    sim = CachingAllocatorSim()
    a, b, c = (sim.malloc(2 * MiB) for _ in range(3))
    sim.free(b)
    assert _blocks(sim) == [[(2 * MiB, True), (2 * MiB, False), (2 * MiB, True), (14 * MiB, False)]]
    sim.free(a)
    assert _blocks(sim) == [[(4 * MiB, False), (2 * MiB, True), (14 * MiB, False)]]
    d = sim.malloc(4 * MiB)
    assert sim.block_of(d) == (sim.segments[0].address, 4 * MiB)
    assert sim.num_segments == 1
    sim.free(d)
    sim.free(c)
    assert _blocks(sim) == [[(20 * MiB, False)]]
    sim.check()


def test_no_coalescing_across_segments() -> None:
    # Two 12 MiB segments adjacent in the model's address space, both freed: still two
    # 12 MiB free blocks, so a 20 MiB request needs a new 20 MiB segment → reserved 44 MiB.
    sim = CachingAllocatorSim()
    for h in [sim.malloc(12 * MiB), sim.malloc(12 * MiB)]:
        sim.free(h)
    sim.malloc(20 * MiB)
    assert sim.reserved_bytes == 44 * MiB


def test_reserved_peak_is_monotone_until_empty_cache_and_reset() -> None:
    # 12 MiB (seg 12), 1.5 MiB (seg 20), free both: reserved stays 32 MiB (cached). A 1 MiB
    # small request adds a 2 MiB segment → 34. empty_cache frees the two whole free segments
    # (12 and 20) but keeps the small one (its block is live): reserved 2, peak still 34;
    # reset_peak_stats brings the peak down to 2.
    sim = CachingAllocatorSim()
    seen = []
    a = sim.malloc(12 * MiB)
    seen.append(sim.peak_reserved_bytes)
    b = sim.malloc(3 * MiB // 2)
    seen.append(sim.peak_reserved_bytes)
    sim.free(a)
    sim.free(b)
    seen.append(sim.peak_reserved_bytes)
    assert sim.reserved_bytes == 32 * MiB
    sim.malloc(MiB)
    seen.append(sim.peak_reserved_bytes)
    assert seen == [12 * MiB, 32 * MiB, 32 * MiB, 34 * MiB]
    sim.empty_cache()
    assert sim.reserved_bytes == K_SMALL_BUFFER
    assert sim.peak_reserved_bytes == 34 * MiB
    assert sim.num_device_free == 2
    sim.reset_peak_stats()
    assert sim.peak_reserved_bytes == 2 * MiB


def test_empty_cache_keeps_a_split_segment() -> None:
    # [1.5 used | 18.5 free] is not one whole free block → empty_cache keeps the segment.
    sim = CachingAllocatorSim()
    sim.malloc(3 * MiB // 2)
    sim.empty_cache()
    assert sim.reserved_bytes == 20 * MiB


def test_failed_cudamalloc_releases_cached_segments_then_retries() -> None:
    # capacity 40 MiB. 12 MiB (seg 12) freed → cached. 30 MiB: no cached block fits; 12 + 30 >
    # 40 → release_cached_blocks frees the 12 MiB segment, retry succeeds: reserved 30.
    # 1.5 MiB then needs a 20 MiB segment: 30 + 20 > 40 and nothing cached is whole → OOM.
    sim = CachingAllocatorSim(capacity_bytes=40 * MiB)
    sim.free(sim.malloc(12 * MiB))
    sim.malloc(30 * MiB)
    assert sim.reserved_bytes == 30 * MiB
    assert sim.num_device_free == 1
    assert sim.num_alloc_retries == 1
    with pytest.raises(SimulatedOutOfMemory):
        sim.malloc(3 * MiB // 2)


def test_max_split_size_oversize_rules() -> None:
    # max_split_size 40 MiB. A cached 60 MiB block is oversize: a 30 MiB request (< 40) may
    # not take it → new 30 MiB segment. A 50 MiB request (>= 40) may take it, since 60 <
    # 50 + 20, and it is not split (oversize requests never split): allocated 30 + 60.
    sim = CachingAllocatorSim(max_split_size=40 * MiB)
    sim.free(sim.malloc(60 * MiB))
    sim.malloc(30 * MiB)
    assert sim.reserved_bytes == 90 * MiB
    h = sim.malloc(50 * MiB)
    assert sim.block_of(h)[1] == 60 * MiB
    assert sim.allocated_bytes == 90 * MiB
    # a cached 80 MiB block is too big for a 50 MiB request (80 >= 50 + 20): new segment
    sim2 = CachingAllocatorSim(max_split_size=40 * MiB)
    sim2.free(sim2.malloc(80 * MiB))
    sim2.malloc(50 * MiB)
    assert sim2.reserved_bytes == 130 * MiB


def test_default_max_split_size_is_unlimited() -> None:
    # Without max_split_size a cached 80 MiB block serves (and is split for) a 50 MiB request.
    sim = CachingAllocatorSim()
    sim.free(sim.malloc(80 * MiB))
    sim.malloc(50 * MiB)
    assert sim.reserved_bytes == 80 * MiB
    assert _blocks(sim) == [[(50 * MiB, True), (30 * MiB, False)]]


def test_bad_requests() -> None:
    sim = CachingAllocatorSim()
    with pytest.raises(ValueError, match="at least 1 byte"):
        sim.malloc(0)
    h = sim.malloc(10)
    sim.free(h)
    with pytest.raises(KeyError):
        sim.free(h)


# -- property-style: random sequences ----------------------------------------------------------

_SIZES = st.one_of(
    st.integers(1, MiB),  # small pool
    st.integers(MiB + 1, 10 * MiB),  # shared 20 MiB segments
    st.integers(10 * MiB, 48 * MiB),  # own segments
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(st.tuples(st.booleans(), _SIZES, st.integers(0, 10**6)), max_size=120),
    empty_every=st.sampled_from([0, 7]),
)
def test_random_sequences_keep_the_invariants(
    ops: list[tuple[bool, int, int]], empty_every: int
) -> None:
    sim = CachingAllocatorSim()
    live: list[int] = []
    last_reserved = last_peak = 0
    for i, (do_malloc, nbytes, pick) in enumerate(ops):
        if do_malloc or not live:
            live.append(sim.malloc(nbytes))
        else:
            sim.free(live.pop(pick % len(live)))
        if empty_every and i % empty_every == empty_every - 1:
            sim.empty_cache()
        else:
            assert sim.reserved_bytes >= last_reserved  # reserved only grows without empty_cache
        assert sim.allocated_bytes <= sim.reserved_bytes
        assert sim.peak_reserved_bytes >= last_peak  # the peak never decreases
        assert sim.peak_reserved_bytes >= sim.reserved_bytes
        assert sim.peak_allocated_bytes <= sim.peak_reserved_bytes
        last_reserved, last_peak = sim.reserved_bytes, sim.peak_reserved_bytes
        sim.check()
    for h in live:
        sim.free(h)
    assert sim.allocated_bytes == 0
    assert all(seg.blocks == ((seg.total_size, False),) for seg in sim.segments)  # all merged
    sim.empty_cache()
    assert sim.reserved_bytes == 0
    assert sim.num_segments == 0
    sim.check()


# -- the replay protocol -----------------------------------------------------------------------


def test_carry_pairs_match_gradients_then_sizes() -> None:
    # prefix: weight 1, old gradient 2 (512 B), old buffer 5 (4 KiB). The step frees 2 and 5,
    # allocates a temporary 3 (freed), a new gradient 4 (512 B) and a new buffer 6 (4 KiB).
    events = [(1, 4096), (2, 512), (5, 4096)]
    step = [(2, 0), (5, 0), (3, 8192), (4, 512), (6, 4096), (3, 0)]
    assert carry_pairs(events + step, step, [(2, 4)]) == ((2, 4), (5, 6))
    assert carry_pairs(events + step, step, []) == ((2, 4), (5, 6))  # by size alone


def test_simulate_reserved_follows_the_probe_protocol() -> None:
    # prefix: weight 12 MiB → segment A (12). A step: free the old gradient, activation
    # 1.5 MiB, new gradient 12 MiB, free the activation; the first step has no old gradient.
    # first: act → new 20 MiB segment B [1.5 | 18.5 free]; grad (12 MiB) best-fits the
    # 18.5 MiB remainder and splits it (6.5 > 1 MiB) → B [1.5 | 12 | 6.5]; act freed.
    # Reserved 32. Warm-up steps 2, 3: freeing the grad merges B back to one 20 MiB block, and
    # the step repeats the same layout. zero_grad frees the grad, B is one whole free block →
    # empty_cache releases it: reserved 12, peak reset to 12. The measured steps cudaMalloc a
    # new 20 MiB segment for the activation and fit the gradient in it: peak reserved 32 MiB,
    # while the allocated peak is only 12 + 1.5 + 12 = 25.5 MiB.
    weight, old_grad, act, grad = 1, 2, 3, 4
    step = [(old_grad, 0), (act, 3 * MiB // 2), (grad, 12 * MiB), (act, 0)]
    trace = StepEvents(
        prefix=[(weight, 12 * MiB)],
        first=step[1:],
        step=step,
        reset_at=1,
        carry=((old_grad, grad),),
    )
    assert simulate_reserved(trace, warmup=3) == 32 * MiB


# -- the estimator -------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", list_presets(), ids=lambda p: p.name)
def test_reserved_estimate_covers_allocated_for_every_preset(preset: Preset) -> None:
    # the presets at batch 32 (their reference inputs), Adam and BCE as DESIGN.md measured them
    p = preset
    estimate = estimate_train_vram(
        p.spec, p.n_mels, p.n_frames, p.n_classes, 32, "adam", task="multi_label"
    )
    reserved = estimate.train_reserved_mb
    assert reserved is not None
    assert reserved >= estimate.train_vram_mb
    # every segment is a multiple of 2 MiB (kSmallBuffer, kLargeBuffer, kRoundLarge)
    assert reserved % 2 == 0
    assert estimate.to_dict()["train_reserved_mb"] == reserved


def test_inference_reserved_estimate_covers_allocated() -> None:
    preset = list_presets()[0]
    for batch in (1, 32):
        allocated, reserved = estimate_infer_reserved(
            preset.spec, preset.n_mels, preset.n_frames, preset.n_classes, batch
        )
        assert reserved >= allocated
        assert reserved % 2 == 0
