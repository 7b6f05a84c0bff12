"""A pure-Python model of PyTorch's CUDA caching allocator, for reserved-memory estimates.

``CachingAllocatorSim`` replays a sequence of ``malloc(nbytes)`` / ``free(handle)`` calls the
way ``c10/cuda/CUDACachingAllocator.cpp`` (``DeviceCachingAllocator``, torch 2.11–2.14, no
``PYTORCH_CUDA_ALLOC_CONF``) serves them, and keeps the two statistics
``torch.cuda.max_memory_allocated`` and ``torch.cuda.max_memory_reserved`` report. No GPU and no
torch are needed. Every rule below names the function of that file it comes from; the code is
written from those facts, not copied.

Constants (top of the file): ``kMinBlockSize`` 512 B, ``kSmallSize`` 1 MiB, ``kSmallBuffer``
2 MiB, ``kMinLargeAlloc`` 10 MiB, ``kLargeBuffer`` 20 MiB, ``kRoundLarge`` 2 MiB.

* Size rounding (``round_size``): a request is rounded up to a multiple of 512 B (at least
  512 B). The power-of-two divisions of ``roundup_power2_divisions`` are off by default.
* Pools (``get_pool``): a rounded size <= 1 MiB is served by the small pool, a larger one by
  the large pool; a block never moves between pools.
* Reuse (``get_free_block``, ``BlockComparatorSize``): free blocks of a pool are ordered by
  (stream, size, address); a request takes the first one not smaller than its size (best fit:
  the smallest that fits, the lowest address among equals). One stream here.
* Oversize blocks (``get_free_block``, ``should_split``), only with ``max_split_size`` set
  (the default is unlimited, which disables all of this): a request below ``max_split_size``
  never takes a cached block of ``max_split_size`` or more; a request of ``max_split_size`` or
  more takes one only if it is less than ``kLargeBuffer`` (20 MiB) larger; blocks are split
  only for requests below ``max_split_size``.
* New segments (``alloc_block``, ``get_allocation_size``): with no cached block a new segment
  is ``cudaMalloc``-ed: 2 MiB for a small request, 20 MiB for a request below 10 MiB, else the
  request rounded up to 2 MiB. ``reserved`` grows by the segment size.
* Splitting (``should_split``, ``alloc_found_block``): the block is cut when the remainder is
  >= 512 B (small pool) or > 1 MiB (large pool); the request takes the front (lower address)
  and the remainder goes back to the pool. Unsplit, the request holds the whole block, and
  ``allocated`` counts the whole block (``allocated_bytes`` adds ``block->size``).
* Freeing (``free``, ``free_block``, ``try_merge_blocks``): the block is merged with its free
  neighbours in the same segment (previous, then next) and returned to its pool; memory stays
  reserved.
* Releasing (``release_cached_blocks``, ``release_blocks``, ``release_block``): only
  ``empty_cache()``, or a ``cudaMalloc`` that fails (here: would pass ``capacity_bytes``),
  returns segments, and only those that are one whole free block. On a failed
  ``cudaMalloc``, ``malloc`` first frees oversize cached blocks (only with
  ``max_split_size``; ``release_available_cached_blocks``), then every unsplit cached segment,
  retrying after each (``malloc``); a last failure is an out-of-memory error.

Not modelled: several streams and cross-stream events (``recordStream``), CUDA graph pools,
``expandable_segments``, ``garbage_collection_threshold``, ``roundup_power2_divisions`` and the
free-memory callbacks. Addresses are a model too: each new segment is placed above every
earlier one (real ``cudaMalloc`` addresses only break ties between equal-sized free blocks).
Requests of 0 bytes never reach this allocator (``allocate`` returns a null pointer), so
``malloc`` rejects them.

Cost: ``malloc`` and ``free`` are O(log n + k) with n free blocks in the pool (``bisect`` on a
sorted list, k for the list shift), about a microsecond or two each in CPython.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass

K_MIN_BLOCK_SIZE = 512  # kMinBlockSize: every block is a multiple of 512 bytes
K_SMALL_SIZE = 1 << 20  # kSmallSize: the largest "small" request, 1 MiB
K_SMALL_BUFFER = 2 << 20  # kSmallBuffer: small requests are packed into 2 MiB segments
K_MIN_LARGE_ALLOC = 10 << 20  # kMinLargeAlloc: requests below 10 MiB share a 20 MiB segment
K_LARGE_BUFFER = 20 << 20  # kLargeBuffer: the shared segment for requests of 1–10 MiB
K_ROUND_LARGE = 2 << 20  # kRoundLarge: larger segments are rounded up to 2 MiB


class SimulatedOutOfMemory(MemoryError):
    """A request that the simulated device cannot serve even after releasing cached segments."""


def round_size(nbytes: int) -> int:
    """Return the block size the allocator serves a request of ``nbytes`` with (``round_size``)."""
    if nbytes < K_MIN_BLOCK_SIZE:
        return K_MIN_BLOCK_SIZE
    return -(-nbytes // K_MIN_BLOCK_SIZE) * K_MIN_BLOCK_SIZE


def allocation_size(size: int) -> int:
    """Return the segment a ``cudaMalloc`` for a rounded ``size`` gets (``get_allocation_size``)."""
    if size <= K_SMALL_SIZE:
        return K_SMALL_BUFFER
    if size < K_MIN_LARGE_ALLOC:
        return K_LARGE_BUFFER
    return -(-size // K_ROUND_LARGE) * K_ROUND_LARGE


@dataclass(frozen=True)
class SegmentInfo:
    """One ``cudaMalloc``-ed segment: its address, size, pool and blocks in address order.

    ``blocks``: ``(size, allocated)`` per block, like ``torch.cuda.memory_snapshot()``.
    """

    address: int
    total_size: int
    is_small: bool
    blocks: tuple[tuple[int, bool], ...]

    @property
    def allocated_size(self) -> int:
        """Return the bytes of the segment's allocated blocks."""
        return sum(size for size, allocated in self.blocks if allocated)


class _Block:
    __slots__ = ("addr", "allocated", "next", "prev", "size", "small")

    def __init__(self, addr: int, size: int, small: bool) -> None:
        self.addr = addr
        self.size = size
        self.small = small
        self.allocated = False
        self.prev: _Block | None = None
        self.next: _Block | None = None


class CachingAllocatorSim:
    """The CUDA caching allocator's blocks, segments and statistics, on one stream.

    ``capacity_bytes``: device memory available to ``cudaMalloc`` (``None``: unlimited, so
    cached segments are only returned by ``empty_cache``). ``max_split_size``: bytes, as
    ``max_split_size_mb`` in ``PYTORCH_CUDA_ALLOC_CONF`` would set (``None``: unlimited, the
    default).
    """

    def __init__(
        self, capacity_bytes: int | None = None, max_split_size: int | None = None
    ) -> None:
        if max_split_size is not None and max_split_size <= 0:
            raise ValueError(f"max_split_size must be positive bytes, got {max_split_size!r}")
        self.capacity_bytes = capacity_bytes
        self.max_split_size = max_split_size
        # free blocks per pool as sorted (size, address) keys (BlockComparatorSize), and every
        # block, free or allocated, by address
        self._free: dict[bool, list[tuple[int, int]]] = {True: [], False: []}
        self._by_addr: dict[int, _Block] = {}
        self._handles: dict[int, _Block] = {}
        self._segments: dict[int, tuple[int, bool]] = {}  # base address -> (size, is_small)
        self._next_handle = 1
        self._next_addr = 0
        self._allocated = 0
        self._reserved = 0
        self._peak_allocated = 0
        self._peak_reserved = 0
        self.num_device_alloc = 0  # cudaMalloc calls
        self.num_device_free = 0  # cudaFree calls
        self.num_alloc_retries = 0  # mallocs that had to release cached segments

    # -- statistics -----------------------------------------------------------------------

    @property
    def allocated_bytes(self) -> int:
        """Return the bytes of allocated blocks (``memory_allocated``)."""
        return self._allocated

    @property
    def reserved_bytes(self) -> int:
        """Return the bytes of all segments (``memory_reserved``)."""
        return self._reserved

    @property
    def peak_allocated_bytes(self) -> int:
        """Return the most bytes allocated at once since a reset (``max_memory_allocated``)."""
        return self._peak_allocated

    @property
    def peak_reserved_bytes(self) -> int:
        """Return the most bytes reserved at once since a reset (``max_memory_reserved``)."""
        return self._peak_reserved

    @property
    def segments(self) -> tuple[SegmentInfo, ...]:
        """Return every segment in address order with its blocks (a snapshot)."""
        out = []
        for base in sorted(self._segments):
            size, small = self._segments[base]
            blocks = []
            block: _Block | None = self._by_addr[base]
            while block is not None:
                blocks.append((block.size, block.allocated))
                block = block.next
            out.append(SegmentInfo(base, size, small, tuple(blocks)))
        return tuple(out)

    @property
    def num_segments(self) -> int:
        """Return how many segments are reserved."""
        return len(self._segments)

    def reset_peak_stats(self) -> None:
        """Set both peaks to the current values (``reset_peak_memory_stats``)."""
        self._peak_allocated = self._allocated
        self._peak_reserved = self._reserved

    def layout(self) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        """Return the free blocks of the small and large pools as (size, address) keys."""
        return tuple(self._free[True]), tuple(self._free[False])

    def block_of(self, handle: int) -> tuple[int, int]:
        """Return the (model) address and size of the block ``handle`` holds."""
        block = self._handles[handle]
        return block.addr, block.size

    # -- malloc / free ----------------------------------------------------------------------

    def malloc(self, nbytes: int) -> int:
        """Serve a request of ``nbytes`` (>= 1) and return a handle for ``free``.

        Raises:
            ValueError: ``nbytes`` < 1.
            SimulatedOutOfMemory: no cached block fits and ``capacity_bytes`` leaves no room
                for a new segment even after releasing cached segments.
        """
        if nbytes < 1:
            raise ValueError(f"malloc needs at least 1 byte, got {nbytes!r}")
        size = round_size(nbytes)
        small = size <= K_SMALL_SIZE  # get_pool
        block = self._get_free_block(small, size)
        if block is None:
            block = self._alloc_segment(small, size)
        remaining = block.size - size
        if self._should_split(small, size, remaining):
            self._split(block, size)
        block.allocated = True
        self._allocated += block.size
        if self._allocated > self._peak_allocated:
            self._peak_allocated = self._allocated
        handle = self._next_handle
        self._next_handle += 1
        self._handles[handle] = block
        return handle

    def free(self, handle: int) -> None:
        """Return the block of ``handle`` to its pool, merged with free neighbours.

        Raises:
            KeyError: ``handle`` is not allocated (never returned by ``malloc``, or freed).
        """
        block = self._handles.pop(handle)
        block.allocated = False
        self._allocated -= block.size
        keys = self._free[block.small]
        prev = block.prev
        if prev is not None and not prev.allocated:  # try_merge_blocks: [prev block]
            self._remove_key(keys, prev)
            del self._by_addr[block.addr]
            block.addr = prev.addr
            block.size += prev.size
            block.prev = prev.prev
            if block.prev is not None:
                block.prev.next = block
            self._by_addr[block.addr] = block
        nxt = block.next
        if nxt is not None and not nxt.allocated:  # try_merge_blocks: [block next]
            self._remove_key(keys, nxt)
            del self._by_addr[nxt.addr]
            block.size += nxt.size
            block.next = nxt.next
            if block.next is not None:
                block.next.prev = block
        bisect.insort(keys, (block.size, block.addr))

    def empty_cache(self) -> None:
        """Release every cached segment that is one whole free block (``release_cached_blocks``)."""
        for small in (False, True):  # release_blocks(large_blocks), then small_blocks
            for _size, addr in list(self._free[small]):
                self._release_if_whole(self._by_addr[addr])

    # -- the allocator's steps ------------------------------------------------------------

    def _get_free_block(self, small: bool, size: int) -> _Block | None:
        keys = self._free[small]
        i = bisect.bisect_left(keys, (size, -1))
        if i == len(keys):
            return None
        block_size, addr = keys[i]
        limit = self.max_split_size
        if limit is not None:
            if size < limit and block_size >= limit:
                return None  # do not return an oversized block for a smaller request
            if size >= limit and block_size >= size + K_LARGE_BUFFER:
                return None  # an oversize request may only round up by less than 20 MiB
        del keys[i]
        return self._by_addr[addr]

    def _should_split(self, small: bool, size: int, remaining: int) -> bool:
        if small:
            return remaining >= K_MIN_BLOCK_SIZE
        limit = self.max_split_size
        return (limit is None or size < limit) and remaining > K_SMALL_SIZE

    def _split(self, block: _Block, size: int) -> None:
        """Cut ``block``: it keeps the front ``size`` bytes, the rest becomes a free block."""
        rest = _Block(block.addr + size, block.size - size, block.small)
        rest.prev = block
        rest.next = block.next
        if rest.next is not None:
            rest.next.prev = rest
        block.next = rest
        block.size = size
        self._by_addr[rest.addr] = rest
        bisect.insort(self._free[block.small], (rest.size, rest.addr))

    def _alloc_segment(self, small: bool, size: int) -> _Block:
        alloc = allocation_size(size)
        if not self._fits(alloc):
            # malloc: release_available_cached_blocks, then release_cached_blocks, retrying
            self.num_alloc_retries += 1
            if not (self._release_oversize(small, size) and self._fits(alloc)):
                self.empty_cache()
                if not self._fits(alloc):
                    raise SimulatedOutOfMemory(
                        f"cannot allocate a {alloc} B segment: {self._reserved} B reserved, "
                        f"{self._allocated} B allocated, capacity {self.capacity_bytes} B"
                    )
        block = _Block(self._next_addr, alloc, small)
        self._next_addr += alloc
        self._by_addr[block.addr] = block
        self._segments[block.addr] = (alloc, small)
        self._reserved += alloc
        if self._reserved > self._peak_reserved:
            self._peak_reserved = self._reserved
        self.num_device_alloc += 1
        return block

    def _fits(self, alloc: int) -> bool:
        return self.capacity_bytes is None or self._reserved + alloc <= self.capacity_bytes

    def _release_oversize(self, small: bool, size: int) -> bool:
        """``release_available_cached_blocks``: free oversize cached blocks, just enough."""
        limit = self.max_split_size
        if limit is None:
            return False
        keys = self._free[small]
        target = max(size, limit)
        i = bisect.bisect_left(keys, (target, -1))
        if i < len(keys):
            return self._release_if_whole(self._by_addr[keys[i][1]])
        released = 0
        for block_size, addr in reversed(list(keys)):  # the largest first
            if released >= target or block_size < limit:
                break
            if self._release_if_whole(self._by_addr[addr]):
                released += block_size
        return released >= target

    def _release_if_whole(self, block: _Block) -> bool:
        # a free remainder of a split segment cannot be cudaFree-d on its own; the model
        # skips it (the C++ code assumes oversize blocks are never split remainders)
        if block.prev is not None or block.next is not None:
            return False
        self._release(block)
        return True

    def _release(self, block: _Block) -> None:
        """``release_block``: ``cudaFree`` a whole free segment (callers check it is one)."""
        self._remove_key(self._free[block.small], block)
        del self._by_addr[block.addr]
        del self._segments[block.addr]
        self._reserved -= block.size
        self.num_device_free += 1

    @staticmethod
    def _remove_key(keys: list[tuple[int, int]], block: _Block) -> None:
        key = (block.size, block.addr)
        i = bisect.bisect_left(keys, key)
        if i == len(keys) or keys[i] != key:
            raise AssertionError(f"free block {key} missing from its pool")
        del keys[i]

    # -- checks -----------------------------------------------------------------------------

    def check(self) -> None:
        """Raise ``AssertionError`` if the internal state is inconsistent (for tests)."""
        allocated = 0
        free_keys: dict[bool, list[tuple[int, int]]] = {True: [], False: []}
        for base, (size, small) in self._segments.items():
            block: _Block | None = self._by_addr[base]
            assert block is not None and block.prev is None, f"segment {base} has no head"
            total, addr, last = 0, base, None
            while block is not None:
                assert block.addr == addr and block.small == small and block.prev is last
                assert self._by_addr[block.addr] is block
                if block.allocated:
                    allocated += block.size
                else:
                    assert last is None or last.allocated, "two neighbouring free blocks"
                    free_keys[small].append((block.size, block.addr))
                total += block.size
                addr += block.size
                last, block = block, block.next
            assert total == size, f"segment {base}: blocks {total} != {size}"
        assert allocated == self._allocated, (allocated, self._allocated)
        assert sum(s for s, _ in self._segments.values()) == self._reserved
        for small in (True, False):
            assert sorted(free_keys[small]) == self._free[small], "pool keys out of sync"
        assert len(self._handles) == sum(1 for b in self._by_addr.values() if b.allocated), (
            "allocated blocks without a handle"
        )
        assert self._allocated <= self._reserved
        assert self._peak_allocated >= self._allocated
        assert self._peak_reserved >= self._reserved


Event = tuple[int, int]  # (key, nbytes): nbytes > 0 allocates under key, 0 frees key


def replay(
    sim: CachingAllocatorSim, events: Iterable[Event], live: MutableMapping[int, int]
) -> None:
    """Apply ``events`` to ``sim``: ``live`` maps each event key to the handle it holds.

    An allocation of a key still in ``live`` leaves the old block allocated (a leak, as
    a reference kept across steps would be); a free of a key not in ``live`` is ignored (it
    was freed in an earlier replay of the same events).
    """
    malloc, free = sim.malloc, sim.free
    for key, nbytes in events:
        if nbytes:
            live[key] = malloc(nbytes)
        else:
            handle = live.pop(key, None)
            if handle is not None:
                free(handle)


# -- replaying a traced training step under the probe's protocol ------------------------------
#
# The probe (trainers.cost_measure.measure_train_vram) and fit (trainers.train) run warm-up
# steps, then zero_grad(set_to_none), empty_cache and reset_peak_memory_stats, then measure
# (5 steps, or the rest of epoch 1). Reserved memory only grows between empty_cache calls, so
# its peak is a high-water mark over all measured steps, reached once the allocator's state
# stops changing.
# A fixed count of replays would be a guess (pons_timbre reserves 364 MiB in its first measured
# step and 418 MiB from its second on; won_short_chunk without the empty_cache would read
# 3074 MiB instead of 2646): simulate_reserved replays the step until the whole allocator
# state (every free block, and the block of every live tensor) is the same after a step as
# after the step before. From then on every step is the same sequence of cache hits, so no
# later step can reserve more. The presets and the FSDD anchors settle after 2 or 3 measured
# steps; MAX_STEADY_STEPS bounds a trace that never settles (one that leaks a tensor a step).
MAX_STEADY_STEPS = 8


@dataclass(frozen=True)
class StepEvents:
    """A traced run cut into what the allocator sees before and during repeated steps.

    ``prefix``: before the first step (weights, batch). ``first``: the first step, ``step``:
    every later one. ``reset_at``: how many leading events of ``step`` the probe runs before
    its ``empty_cache`` (``zero_grad``'s frees of the gradients). ``carry``: (key that ``step``
    frees without allocating it, key that ``step`` allocates and leaves live that takes its
    place in the next step), e.g. (old gradient, new gradient) of one parameter.
    """

    prefix: list[Event]
    first: list[Event]
    step: list[Event]
    reset_at: int = 0
    carry: tuple[tuple[int, int], ...] = ()


def carry_pairs(
    events: list[Event], step: list[Event], pairs: list[tuple[int, int]]
) -> tuple[tuple[int, int], ...]:
    """Return ``StepEvents.carry`` for ``step`` (a slice of ``events``).

    ``pairs`` (before, after) are matched first (a parameter's gradient before and after the
    step); the rest is matched by size, in event order.
    """
    survivors: dict[int, int] = {}
    freed_before: list[int] = []
    for key, nbytes in step:
        if nbytes:
            survivors[key] = nbytes
        elif survivors.pop(key, None) is None:
            freed_before.append(key)
    sizes = {key: nbytes for key, nbytes in events if nbytes}
    freed = set(freed_before)
    carry = [(old, new) for old, new in pairs if old in freed and new in survivors]
    used_old = {old for old, _ in carry}
    used_new = {new for _, new in carry}
    spare: dict[int, list[int]] = {}
    for key, nbytes in survivors.items():
        if key not in used_new:
            spare.setdefault(nbytes, []).append(key)
    for old in freed_before:
        if old not in used_old and spare.get(sizes.get(old, 0)):
            carry.append((old, spare[sizes[old]].pop(0)))
    return tuple(carry)


def simulate_reserved(trace: StepEvents, warmup: int, max_steps: int = MAX_STEADY_STEPS) -> int:
    """Return the peak reserved bytes of ``trace`` under the probe's protocol.

    ``prefix``, ``first``, ``warmup - 1`` more steps, the first ``reset_at`` events of a step,
    ``empty_cache`` and a peak reset, the rest of that step, then whole steps until the
    allocator's state repeats (at most ``max_steps`` measured steps in all).
    """
    sim = CachingAllocatorSim()
    live: dict[int, int] = {}

    def run(events: list[Event]) -> None:
        replay(sim, events, live)
        for old, new in trace.carry:
            if new in live:
                live[old] = live.pop(new)

    def state() -> object:
        return sim.layout(), sorted((key, sim.block_of(h)) for key, h in live.items())

    replay(sim, trace.prefix, live)
    run(trace.first)
    for _ in range(warmup - 1):
        run(trace.step)
    replay(sim, trace.step[: trace.reset_at], live)
    sim.empty_cache()
    sim.reset_peak_stats()
    run(trace.step[trace.reset_at :])
    previous = state()
    for _ in range(max_steps - 1):
        run(trace.step)
        current = state()
        if current == previous:
            break
        previous = current
    return sim.peak_reserved_bytes
