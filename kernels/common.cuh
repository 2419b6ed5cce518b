// common.cuh — helpers shared by every kernel file. Device code only.
#pragma once
#include <cuda_fp16.h>
#include "abi.h"

// Every kernel is launched with its params struct by value, then its RsTicket (abi.h):
//   RS_KERNEL void name(const __grid_constant__ XParams p, RS_TICKET t)
#define RS_KERNEL extern "C" __global__
#define RS_TICKET const __grid_constant__ RsTicket

// A kernel of the work-unit loop is built twice from one body, which sees its params as `p`,
// its ticket as `t` and the compile-time bool RS_COUNTED:
//   RS_KERNEL_PAIR(__launch_bounds__(…), name, XParams) { … RS_FOR_EACH_UNIT(u, units, t) … }
// `name` takes its units in the plain order (block b: b, b + gridDim.x, …) and reads no
// claims: the code, registers and speed of a kernel without claims. `name_counted` takes
// them from the ticket's counter and leaves a claimed SM (rs::Units). The runtime launches
// the counted one only once claims are expected (runtime/claims.rs, UnitOrder).
#define RS_KERNEL_PAIR(bounds, name, Params)                                                  \
    template <bool RS_COUNTED>                                                                \
    __device__ __forceinline__ void name##_body(const Params& p, const RsTicket& t);         \
    RS_KERNEL void bounds name(const __grid_constant__ Params p, RS_TICKET t) {               \
        name##_body<false>(p, t);                                                             \
    }                                                                                         \
    RS_KERNEL void bounds name##_counted(const __grid_constant__ Params p, RS_TICKET t) {     \
        name##_body<true>(p, t);                                                              \
    }                                                                                         \
    template <bool RS_COUNTED>                                                                \
    __device__ __forceinline__ void name##_body(const Params& p, const RsTicket& t)

// Work-unit loop of the kernel contract: correct for every grid >= 1 and under any claims.
// Every thread of the block runs it, in the body of an RS_KERNEL_PAIR (or a template given
// its RS_COUNTED); counted, each later unit costs one block barrier (rs::Units). The body may
// `continue`; it must not `break` or `return`.
#define RS_FOR_EACH_UNIT(u, units, ticket) RS_FOR_EACH_UNIT_BY(u, units, ticket, 1)

// The same for units of about a microsecond (elementwise kernels): after its first unit a
// block takes `group` consecutive units at a time, so the counter and the claim are read
// once per group (a claimed block leaves within `group` units).
#define RS_FOR_EACH_UNIT_BY(u, units, ticket, group)                                                     \
    for (rs::Units<(group), RS_COUNTED> rs_units_##u((ticket), (units)); rs_units_##u.more(); rs_units_##u.next()) \
        if (const unsigned long long u = rs_units_##u.begin(); true)

// The plain contract's loop, for kernels whose threads take units on their own (the streamed
// decode GEMM): block b takes b, b + gridDim.x, … whatever the ticket says.
#define RS_FOR_EACH_STATIC_UNIT(u, units) \
    for (unsigned long long u = blockIdx.x; u < (unsigned long long)(units); u += gridDim.x)

namespace rs {

typedef unsigned long long u64;

__device__ __forceinline__ unsigned int smid() {
    unsigned int s;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
    return s;
}

__device__ __forceinline__ u64 globaltimer() {
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

template <typename T>
__device__ __forceinline__ T* ptr(u64 p) {
    return reinterpret_cast<T*>(p);
}

// Loads and atomics that a thread issues ahead of its need, predicated: when `on`, the value;
// otherwise 0. Every thread runs them, so the result is defined on every path and lands in
// its register without a copy: the thread waits for the round trip only where it reads it.
// (Assigned in a branch, the compiler copies the pending result where the branch ends, and
// the copy waits. atomicAdd, or an add whose operand the compiler can show equal in every
// lane, becomes a warp-wide add whose result is shuffled to the lanes at once: lane >> 5,
// always 0, keeps the operand's lanes apart.)
__device__ __forceinline__ unsigned load_u8_if(bool on, const void* p) {
    unsigned v;
    asm volatile("{ .reg .pred q; setp.ne.b32 q, %1, 0; @q ld.global.nc.u8 %0, [%2]; @!q mov.u32 %0, 0; }"
                 : "=r"(v)
                 : "r"((unsigned)on), "l"(p));
    return v;
}

__device__ __forceinline__ unsigned load_relaxed_if(bool on, const unsigned* p) {
    unsigned v;
    asm volatile("{ .reg .pred q; setp.ne.b32 q, %1, 0; @q ld.relaxed.gpu.global.u32 %0, [%2]; @!q mov.u32 %0, 0; }"
                 : "=r"(v)
                 : "r"((unsigned)on), "l"(p));
    return v;
}

__device__ __forceinline__ u64 fetch_add_if(bool on, u64* p, u64 v) {
    unsigned lane;
    asm volatile("mov.u32 %0, %%laneid;" : "=r"(lane));
    u64 old;
    asm volatile(
        "{ .reg .pred q; setp.ne.b32 q, %1, 0; @q atom.relaxed.gpu.global.add.u64 %0, [%2], %3; @!q mov.u64 %0, 0; }"
        : "=l"(old)
        : "r"((unsigned)on), "l"(p), "l"(v + (lane >> 5)));
    return old;
}

// *p += v from one thread, returning the old value.
__device__ __forceinline__ u64 fetch_add(u64* p, u64 v) { return fetch_add_if(true, p, v); }

// ---- work units and claims (RsTicket) ------------------------------------------------
// What the thread that takes a block's units (thread 0, or a producer thread that hands them
// to the others) keeps while it takes them. Units are taken from the counter only when there
// are more than blocks, or the launch takes all (below) (`dynamic`); otherwise each block
// has its one unit, b, and the launch never touches the counter.
//
// The counter is one word, blocks that left for a claim << 32 | tickets taken, so each
// block's last atomic on it tells whether every other block has left: tickets past the
// launch's (rs::Tickets) are blocks that found nothing left. The
// last block out takes what claimed blocks left and zeroes the word.
//
// A launch a continuation follows (RsTicket.chain = RS_CHAIN_FOLLOWS: the runtime issued it
// while a claim was up) does no first units: every block takes every unit from the counter,
// reading the claim first, so a block that starts on a claimed SM leaves without touching
// the work there. No block of it finishes the rest: every block leaves a claimed SM after the
// units in hand, and the last one out sets the word to the tickets taken (blocks that left,
// 0). The continuation, launched after it with chain = its grid, takes the tickets that are
// left the same way, laid out by that grid, and ends as a launch alone does (the last out
// zeroes the word). kernels/units_model.rs models this protocol and checks it on the CPU in
// many orders.
//
// How a launch's units after each block's first are handed out: `big` tickets of `group`
// units each, then single units, at least group × grid of them (all of them when there are
// fewer; grid: the launch's, or the first launch's for a continuation). The singles at the
// end keep every block busy while the last groups finish: no block ends more than about one
// unit after the others, as with the plain order, however coarse the groups.
// Whether the launch is a continuation (RsTicket.chain).
__device__ __forceinline__ bool continues(const RsTicket& t) { return t.chain != 0 && t.chain != RS_CHAIN_FOLLOWS; }

// Whether a continuation follows the launch.
__device__ __forceinline__ bool followed(const RsTicket& t) { return t.chain == RS_CHAIN_FOLLOWS; }

// Whether the launch does no first units, taking every unit from the counter: a launch a
// continuation follows, or the continuation.
__device__ __forceinline__ bool takes_all(const RsTicket& t) { return t.chain != 0; }

// Units 0 … first_units - 1 are the blocks' first units (b for block b), not tickets.
__device__ __forceinline__ unsigned first_units(const RsTicket& t) { return takes_all(t) ? 0 : gridDim.x; }

// The grid the tickets are laid out by: the launch's own, or the one it continues.
__device__ __forceinline__ unsigned layout_grid(const RsTicket& t) { return continues(t) ? t.chain : gridDim.x; }

struct Tickets {
    u64 big;        // tickets of `group` units
    unsigned group;
    unsigned first;  // first_units: units 0 … first - 1 are the blocks' first units, not tickets

    __device__ Tickets(u64 units, unsigned group, unsigned first, unsigned grid) : group(group), first(first) {
        const u64 rest = units - first, tail = (u64)group * grid;
        big = rest > tail ? (rest - tail) / group : 0;
    }
    // A launch's tickets (RsTicket.chain says which units are first units and the grid).
    __device__ static Tickets of(const RsTicket& t, u64 units, unsigned group) {
        return Tickets(units, group, first_units(t), layout_grid(t));
    }
    // Tickets in all (the counter's count of tickets fits 32 bits).
    __device__ unsigned count(u64 units) const { return (unsigned)(big + (units - first - big * group)); }
    // The first unit of ticket i and how many it holds.
    __device__ u64 first_of(u64 i) const { return first + (i < big ? i * group : big * group + (i - big)); }
    __device__ unsigned size(u64 i) const { return i < big ? group : 1; }
    // Whether `unit` is the last of its ticket (or a block's first unit, a ticket of its own).
    __device__ bool ends(u64 unit) const {
        return unit < first || unit >= first + big * group || (unit - first) % group == group - 1;
    }
};

// ---- paused tiles (abi.h, RS_PAUSE_*: the Hopper GEMM) ---------------------------------
// A tile to work on: a new one (slot NO_SLOT, from K step 0) or a paused one (its slot holds
// the accumulators up to `kstep`).
struct Tile {
    static constexpr unsigned NO_SLOT = 0xffffffffu;
    u64 unit;
    unsigned kstep, slot;
};

// The pool's pause slots and how many (abi.h: in the stream's unit area, written once).
__device__ __forceinline__ u64 pause_table(const RsTicket& t) { return ptr<const u64>(t.counter)[1]; }
__device__ __forceinline__ unsigned pause_slots(const RsTicket& t) { return ptr<const unsigned>(t.counter)[4]; }
__device__ __forceinline__ u64* pause_word(const RsTicket& t) { return ptr<u64>(t.counter + 128); }
__device__ __forceinline__ u64* pause_entry(const RsTicket& t, unsigned i) { return ptr<u64>(t.counter + 256) + i; }
// The word of warpgroup `wg` of slot `slot`: 1 while its accumulators wait in the slot.
__device__ __forceinline__ unsigned* slot_ready(const RsTicket& t, unsigned slot, unsigned wg) {
    return ptr<unsigned>(pause_table(t) + 8 * (RS_PAUSE_MAX_SLOTS / 64)) + 2 * slot + wg;
}
// How many warpgroups have loaded slot `slot`'s accumulators.
__device__ __forceinline__ unsigned* slot_loaded(const RsTicket& t, unsigned slot) {
    return ptr<unsigned>(pause_table(t) + 8 * (RS_PAUSE_MAX_SLOTS / 64) + 8 * RS_PAUSE_MAX_SLOTS) + slot;
}
__device__ __forceinline__ float* slot_data(const RsTicket& t, unsigned slot) {
    return ptr<float>(pause_table(t) + RS_PAUSE_HEADER_BYTES + (u64)slot * RS_PAUSE_SLOT_BYTES);
}

__device__ __forceinline__ u64 load_relaxed64(const u64* p) {
    u64 v;
    asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void store_release(unsigned* p, unsigned v) {
    asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

// A free slot, marked in use, or pause_slots(t) when every slot is in use.
__device__ __forceinline__ unsigned take_slot(const RsTicket& t) {
    u64* bits = ptr<u64>(pause_table(t));
    const unsigned slots = pause_slots(t);
    for (unsigned w = 0; 64 * w < slots; ++w) {
        const unsigned valid = min(64u, slots - 64 * w);
        const u64 mask = valid == 64 ? ~0ull : (1ull << valid) - 1;
        u64 seen = load_relaxed64(bits + w);
        while (~seen & mask) {
            const unsigned b = __ffsll((long long)(~seen & mask)) - 1;
            seen = atomicOr(bits + w, 1ull << b);
            if (!(seen & 1ull << b)) return 64 * w + b;
        }
    }
    return slots;
}

__device__ __forceinline__ void free_slot(const RsTicket& t, unsigned slot) {
    atomicAnd(ptr<u64>(pause_table(t)) + slot / 64, ~(1ull << slot % 64));
}

// Writes entry i: the tile, its slot (RS_PAUSE_CANCELLED: none) and the K step it goes on from.
__device__ __forceinline__ void write_entry(const RsTicket& t, unsigned i, u64 unit, unsigned kstep, unsigned slot) {
    const u64 e = 1ull << 63 | (u64)slot << 48 | (u64)kstep << 32 | unit;
    asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(pause_entry(t, i)), "l"(e) : "memory");
}

// Takes the oldest paused tile not yet taken (waiting for an entry reserved but not yet
// written: its block is resident and writes it next), skipping cancelled ones and
// reservations past the list's end; false when there is none.
__device__ __forceinline__ bool take_paused(const RsTicket& t, Tile& tile) {
    u64* w = pause_word(t);
    u64 seen = load_relaxed64(w);
    while ((unsigned)seen < (unsigned)(seen >> 32)) {
        const u64 old = atomicCAS(w, seen, seen + 1);
        if (old != seen) {
            seen = old;
            continue;
        }
        if ((unsigned)seen >= RS_PAUSE_ENTRIES) {
            seen = load_relaxed64(w);
            continue;
        }
        u64* entry = pause_entry(t, (unsigned)seen);
        u64 e;
        while (!((e = load_relaxed64(entry)) >> 63)) __nanosleep(32);
        *entry = 0;  // for the next launch's list
        const unsigned slot = (unsigned)(e >> 48) & 0x7fff;
        if (slot != RS_PAUSE_CANCELLED) {
            tile = Tile{e & 0xffffffffull, (unsigned)(e >> 32) & 0xffff, slot};
            return true;
        }
        seen = load_relaxed64(w);
    }
    return false;
}

// Only the taking thread reads or writes this: rs::Units keeps it in shared memory, so the
// loop of every kernel costs its threads no more registers than the unit itself.
struct Taker {
    unsigned done;     // units this block has done, the one in hand included
    bool has_ahead;    // a ticket was taken ahead (Units)
    bool leaving;      // its SM was claimed: it leaves after the units in hand
    bool last;         // the last block out: claims no longer stop it
    bool claimed;      // it left for a claim
    bool paused;       // it left in the middle of a tile (Taker::pause)

    __device__ void init(const RsTicket& t, u64 units) {
        done = !takes_all(t) && blockIdx.x < units;
        has_ahead = leaving = last = claimed = paused = false;
    }

    // Whether the launch takes units from its counter.
    static __device__ bool dynamic(const RsTicket& t, u64 units) { return t.counter && units > first_units(t); }

    // The block's first unit: b, or where the launch takes all (takes_all) one taken from the
    // counter (`units`: none, or its SM is claimed).
    __device__ u64 first(const RsTicket& t, u64 units, unsigned group) {
        return takes_all(t) ? take(t, units, group) : blockIdx.x;
    }

    static __device__ u64* counter(const RsTicket& t) { return ptr<u64>(t.counter); }

    // The claim level on the group of this block's SM (0 without claims or SM group).
    static __device__ unsigned claim(const RsTicket& t) {
        if (!t.claims) return 0;
        const unsigned g = __ldg(ptr<const unsigned char>(t.group_of) + smid());
        unsigned level;
        asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(level) : "l"(ptr<const unsigned>(t.claims) + g));
        return level;
    }

    // The first unit of a ticket taken (`old`: the counter before it), or `units` when it
    // found none (and then, the last block out, it zeroes the counter).
    __device__ u64 units_of(const RsTicket& t, u64 units, unsigned group, u64 old) {
        const unsigned taken = (unsigned)old;
        const Tickets plan = Tickets::of(t, units, group);
        const unsigned tickets = plan.count(units);
        if (taken < tickets) {
            done += plan.size(taken);
            return plan.first_of(taken);
        }
        // Every ticket is taken: a continuation finds none left.
        if (last || (taken - tickets) + (unsigned)(old >> 32) == gridDim.x - 1) *counter(t) = followed(t) ? tickets : 0;
        return units;
    }

    // After the units in hand (dynamic): the first of the next group of this block, or
    // `units` once it leaves. Reads the claim, then takes a ticket: two round trips.
    __device__ u64 take(const RsTicket& t, u64 units, unsigned group) {
        if (!last && claim(t) > t.level) leaving = true;
        if (leaving && !last && leave(t, units, group)) return units;
        return units_of(t, units, group, fetch_add(counter(t), 1ull));
    }

    // A block whose SM is claimed counts itself out: true when it leaves (blocks still in, or
    // the continuation, take what it leaves), false when every other block has left already
    // (and not for a continuation): it is then the last, which takes what is left, claims or
    // not.
    __device__ bool leave(const RsTicket& t, u64 units, unsigned group) {
        const u64 old = fetch_add(counter(t), 1ull << 32);
        const unsigned tickets = Tickets::of(t, units, group).count(units);
        const unsigned taken = (unsigned)old, found_none = taken > tickets ? taken - tickets : 0;
        const bool last_out = found_none + (unsigned)(old >> 32) == gridDim.x - 1;
        if (followed(t) || !last_out) {
            claimed = true;
            // The last out hands the continuation the tickets taken.
            if (last_out) *counter(t) = taken < tickets ? taken : tickets;
            return true;
        }
        last = true;
        return false;
    }

    // The Hopper GEMM's producer (a unit a ticket): Taker::take with paused tiles (abi.h,
    // RS_PAUSE_*), which go before new tickets. The last block out takes every paused tile
    // left before it zeroes the words; a launch a continuation follows leaves them to it. A
    // tile whose unit is `units` means the block leaves. Where a watcher thread reads the
    // claim and the pause word (`seen`: the claim level it read, or -1 to read it here;
    // `maybe_paused`: whether the list held a paused tile when it last looked), the take costs
    // one round trip, the ticket's: a tile paused since is taken by a later take or the last
    // block out, which reads the list itself. `pausing`: whether the launch's tiles may pause
    // (the kernel's own test, so no read of the unit area comes before the ticket's).
    __device__ Tile next_tile(const RsTicket& t, u64 units, int seen, bool maybe_paused, bool pausing) {
        if (!last && (seen < 0 ? claim(t) : (unsigned)seen) > t.level) leaving = true;
        if (leaving && !last && leave(t, units, 1)) return Tile{units, 0, Tile::NO_SLOT};
        Tile tile;
        if (pausing && maybe_paused && take_paused(t, tile)) {
            ++done;
            return tile;
        }
        const u64 old = fetch_add(counter(t), 1ull);
        const Tickets plan = Tickets::of(t, units, 1);
        const unsigned taken = (unsigned)old, tickets = plan.count(units);
        if (taken < tickets) {
            ++done;
            return Tile{plan.first_of(taken), 0, Tile::NO_SLOT};
        }
        if (last || (taken - tickets) + (unsigned)(old >> 32) == gridDim.x - 1) {
            if (!followed(t) && pausing) {
                // Every other block is out, so every tile paused is on the list by now (a
                // block reserves its entry before it counts itself out).
                last = true;
                __threadfence();
                if (take_paused(t, tile)) {
                    ++done;
                    return tile;
                }
                *pause_word(t) = 0;
            }
            *counter(t) = followed(t) ? tickets : 0;
        }
        return Tile{units, 0, Tile::NO_SLOT};
    }

    // The producer of a block whose SM is claimed in the middle of a tile: a slot for its
    // accumulators and an entry of the pause list, both asked for at once (a round trip).
    // False, and the block leaves after the tile, where either is missing.
    __device__ bool reserve_pause(const RsTicket& t, unsigned& slot, unsigned& entry) {
        // First the slot of this SM's two (free unless a tile paused here waits for a taker).
        const unsigned slots = pause_slots(t), guess = 2 * smid() % slots;
        const u64 bits = atomicOr(ptr<u64>(pause_table(t)) + guess / 64, 1ull << guess % 64);
        entry = (unsigned)(atomicAdd(pause_word(t), 1ull << 32) >> 32);
        slot = bits >> guess % 64 & 1 ? take_slot(t) : guess;
        if (slot < slots && entry < RS_PAUSE_ENTRIES) return true;
        if (slot < slots) free_slot(t, slot);
        if (entry < RS_PAUSE_ENTRIES) write_entry(t, entry, 0, 0, RS_PAUSE_CANCELLED);
        leaving = true;
        return false;
    }

    // After reserve_pause, once the consumers are told to store the accumulators of tile
    // `unit`'s K steps before `kstep` into `slot`: the block counts itself out and writes the
    // entry. True when it leaves; false when it is the last block out, which goes on taking
    // (this tile among the paused ones).
    __device__ bool pause(const RsTicket& t, u64 units, u64 unit, unsigned kstep, unsigned slot, unsigned entry) {
        // The entry is reserved before the block counts itself out, so the last out sees it.
        __threadfence();
        const bool leaves = leave(t, units, 1);
        --done;  // whoever takes it finishes it
        paused = true;
        write_entry(t, entry, unit, kstep, slot);
        return leaves;
    }

    // What the trace records of this block as it leaves.
    __device__ u64 leave_word() const { return (u64)smid() << 32 | (u64)claimed << 31 | (u64)paused << 30 | done; }

    // The same for a block of a launch in the plain order (units b, b + gridDim.x, …).
    static __device__ u64 plain_word(u64 units) {
        const u64 done = blockIdx.x < units ? (units - 1 - blockIdx.x) / gridDim.x + 1 : 0;
        return (u64)smid() << 32 | done;
    }
};

// Records when a block started on its units (RsTicket.trace), once per block.
__device__ __forceinline__ void trace_start(const RsTicket& t) {
    if (t.trace) ptr<u64>(t.trace)[3 * (u64)blockIdx.x] = globaltimer();
}

// Records when a block left and why (RsTicket.trace), once per block.
__device__ __forceinline__ void trace_leave(const RsTicket& t, u64 word) {
    if (!t.trace) return;
    u64* tr = ptr<u64>(t.trace) + 3 * (u64)blockIdx.x;
    tr[1] = globaltimer();
    tr[2] = word;
}

// The block-wide unit source of RS_FOR_EACH_UNIT_BY: thread 0 takes (its rs::Taker in shared
// memory), the others read the unit from shared memory (two slots by parity, so one barrier
// per take suffices). A block's first unit is b, a ticket of its own (where the launch takes
// all, rs::takes_all, it is taken too); the others are handed out as rs::Tickets lays them out, so where a ticket's units end follows from the unit
// alone. So that a take costs no round trip, thread 0 reads the claim and takes the next
// ticket as the last unit of a group begins, and uses them when it ends: a block whose SM is
// claimed leaves within the group in hand and one more (units are a few microseconds; the
// Hopper GEMM's producer takes tiles itself, Taker::take). What was read ahead stays in
// thread 0's registers until the group ends (load_relaxed_if, fetch_add_if): stored to shared
// memory at once, it would hold thread 0, and with it the block, for the round trip.
template <unsigned GROUP, bool COUNTED>
struct Units;

// The plain order: block b takes b, b + gridDim.x, …; no counter, claims or trace (the loop
// of a kernel without claims, to the instruction).
template <unsigned GROUP>
struct Units<GROUP, false> {
    const u64 units;
    u64 unit;

    __device__ Units(const RsTicket&, u64 units) : units(units), unit(blockIdx.x) {}
    __device__ bool more() const { return unit < units; }
    __device__ u64 begin() const { return unit; }
    __device__ void next() { unit += gridDim.x; }
};

template <unsigned GROUP>
struct Units<GROUP, true> {
    const RsTicket& t;
    const u64 units;
    u64 unit;
    unsigned parity = 0;
    const bool dyn;  // Taker::dynamic, read once: the plain order costs what the plain loop did
    const unsigned group;  // thread 0: its SM's group (dynamic with claims)
    // Thread 0, from a group's last unit's begin() to its next(): the counter before the
    // ticket taken ahead and the claim read with it.
    u64 ahead;
    unsigned ahead_level;

    static __device__ Taker& taker() {
        __shared__ Taker state;
        return state;
    }

    __device__ Units(const RsTicket& t, u64 units)
        : t(t),
          units(units),
          unit(blockIdx.x),
          dyn(Taker::dynamic(t, units)),
          // RS_NO_GROUP's claim word is always 0 (abi.h)
          group(load_u8_if(threadIdx.x == 0 && dyn && t.claims, ptr<const unsigned char>(t.group_of) + smid())) {
        if (threadIdx.x == 0) {
            if (dyn) taker().init(t, units);
            trace_start(t);
        }
        // Where the launch takes all (a continuation, or a launch one follows), blocks take even
        // their first unit (the same for every thread of the block, so the barrier is
        // uniform); with no units past the first ones there is nothing for it to do.
        if (takes_all(t)) {
            __shared__ u64 first;
            if (dyn && threadIdx.x == 0) first = taker().first(t, units, GROUP);
            if (dyn) __syncthreads();
            unit = dyn ? first : units;
        }
    }

    __device__ bool dynamic() const { return dyn; }

    __device__ bool group_ends() const { return Tickets::of(t, units, GROUP).ends(unit); }

    __device__ bool more() {
        if (unit < units) return true;
        if (threadIdx.x == 0 && t.trace) trace_leave(t, dyn ? taker().leave_word() : Taker::plain_word(units));
        // The slots are shared by every loop of the kernel: all threads have read the last one.
        if (dynamic()) __syncthreads();
        return false;
    }

    // The unit the body works on; thread 0 starts the next take as a group's last unit begins.
    __device__ u64 begin() {
        bool take = false;
        if (threadIdx.x == 0 && dynamic() && group_ends()) {
            Taker& k = taker();
            take = !k.leaving && !k.last;
            k.has_ahead = take;
        }
        ahead_level = load_relaxed_if(take && t.claims, ptr<const unsigned>(t.claims) + group);
        ahead = fetch_add_if(take, Taker::counter(t), 1ull);
        return unit;
    }

    __device__ void next() {
        if (!dynamic()) {
            unit += gridDim.x;
            return;
        }
        if (!group_ends()) {
            ++unit;
            return;
        }
        __shared__ u64 slot[2];
        if (threadIdx.x == 0) {
            Taker& k = taker();
            u64 u;
            if (k.has_ahead) {
                k.has_ahead = false;
                u = k.units_of(t, units, GROUP, ahead);
                // Claimed: the group just taken is in hand; the block leaves after it.
                if (ahead_level > t.level) k.leaving = true;
            } else {
                u = k.take(t, units, GROUP);
            }
            slot[parity] = u;
        }
        __syncthreads();
        unit = slot[parity];
        parity ^= 1;
    }
};

// ---- programmatic dependent launch (sm_90) ------------------------------------------
// On Hopper the launch path lets a kernel start while the previous kernel of its stream is
// still running (PDL), so its launch and any prologue that reads only weights overlap that
// kernel. Every kernel therefore calls pdl_wait() before it reads anything an earlier kernel
// wrote and before it writes anything, in every block (so a kernel's completion implies its
// predecessor's). pdl_release() then lets the next kernel launch. Both are no-ops before sm_90
// and when the launch did not ask for PDL.
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_release() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The usual kernel start: wait for the predecessor, then let the successor launch.
__device__ __forceinline__ void pdl_sync() {
    pdl_wait();
    pdl_release();
}

// Asks L2 to fetch [p, p + bytes) (bytes a multiple of 16, p 16-byte aligned) without
// waiting for it: weights a kernel will read, fetched before pdl_wait().
__device__ __forceinline__ void prefetch_l2(const void* p, unsigned bytes) {
#if __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#endif
}

// x rounded to the nearest FP16, as a float.
__device__ __forceinline__ float round_half(float x) { return __half2float(__float2half_rn(x)); }

// Llama's rotate-half RoPE of one pair, x1 = x[i] and x2 = x[i + head_dim/2], at angle
// pos·inv_freq[i] (the caller's product, in FP32; full-range sincosf), in FP16 arithmetic as in
// `x·cos + rotate_half(x)·sin` on FP16 tensors: cos and sin are rounded, and so is each
// product and the sum. rope_f16 and the decode attention's fused RoPE both use it (the latter
// as rope_angle once an angle, then rope_rotate), so their outputs have the same bits.
__device__ __forceinline__ void rope_angle(float angle, float& cs, float& sn) {
    sincosf(angle, &sn, &cs);
    cs = round_half(cs);
    sn = round_half(sn);
}

__device__ __forceinline__ void rope_rotate(float x1, float x2, float cs, float sn, __half& y1, __half& y2) {
    y1 = __float2half_rn(round_half(x1 * cs) - round_half(x2 * sn));
    y2 = __float2half_rn(round_half(x2 * cs) + round_half(x1 * sn));
}

__device__ __forceinline__ void rope_pair(float x1, float x2, float angle, __half& y1, __half& y2) {
    float cs, sn;
    rope_angle(angle, cs, sn);
    rope_rotate(x1, x2, cs, sn, y1, y2);
}

__device__ __forceinline__ float gelu(float x, unsigned int act) {
    if (act == RS_ACT_GELU_TANH) {
        const float k0 = 0.7978845608028654f;  // sqrt(2/pi)
        return 0.5f * x * (1.0f + tanhf(k0 * (x + 0.044715f * x * x * x)));
    }
    if (act == RS_ACT_GELU_ERF) return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    return x;
}

// SwiGLU of FP16 values g (gate) and u (up), before the final rounding: silu(g) is rounded to
// FP16 before the product, as `act(gate) * up` on FP16 tensors is. swiglu_f16 and the packed
// GEMM's RS_ACT_SWIGLU epilogue both use it.
__device__ __forceinline__ float swiglu(float g, float u) {
    return round_half(g / (1.0f + expf(-g))) * u;
}

// Columns of a chunk of k-column weights packed by pack_tiles_f16 (abi.h, PackParams):
// RS_GEMM_P_KC, or all of a shorter k.
__device__ __forceinline__ unsigned packed_chunk(unsigned k) { return k < RS_GEMM_P_KC ? k : RS_GEMM_P_KC; }

// Element (row, col) of an n × k matrix packed by pack_tiles_f16 (abi.h, PackParams; not as
// gate/up pairs): its tile's chunk, half, slice, atom row and swizzled 16-byte piece.
__device__ __forceinline__ u64 packed_index(u64 row, unsigned col, unsigned k) {
    const unsigned kc = packed_chunk(k), slices = kc / 32;
    const unsigned r = row % 8, half = row / 8 % 2, slice = col % kc / 32, piece = col % 32 / 8;
    const u64 chunk = row / 16 * (k / kc) + col / kc;
    return (((chunk * 2 + half) * slices + slice) * 8 + r) * 32 + 8 * (piece ^ (r / 2 % 4)) + col % 8;
}

// ---- GEMM epilogue (every GEMM kernel) ----------------------------------------------------
// One output value before its final rounding: act(v + bias) (+ r): the activation's result is
// rounded to FP16 before the residual is added, as frameworks do (`residual + proj(x)` in
// FP16).
__device__ __forceinline__ float gemm_value(float v, unsigned int act, bool has_bias, float bias, bool has_r, float r) {
    if (has_bias) v += bias;
    v = gelu(v, act);
    return has_r ? round_half(v) + r : v;
}

// Stores C[row][col] (and C[row][col+1] when `pair`) = gemm_value(…), for a GemmParams `p` of
// batch entry C/R. `pairs_ok`: C takes 4-byte stores.
__device__ __forceinline__ void gemm_store(const GemmParams& p, __half* C, const __half* R, const __half* bias,
                                           unsigned row, unsigned col, float v0, float v1, bool pair,
                                           bool pairs_ok) {
    const __half* r = R ? R + (u64)row * p.ldr + col : nullptr;
    v0 = gemm_value(v0, p.act, bias, bias ? __half2float(bias[col]) : 0.0f, R, R ? __half2float(r[0]) : 0.0f);
    if (pair)
        v1 = gemm_value(v1, p.act, bias, bias ? __half2float(bias[col + 1]) : 0.0f, R, R ? __half2float(r[1]) : 0.0f);
    __half* c = C + (u64)row * p.ldc + col;
    if (pair && pairs_ok) {
        *reinterpret_cast<__half2*>(c) = __floats2half2_rn(v0, v1);
    } else {
        c[0] = __float2half_rn(v0);
        if (pair) c[1] = __float2half_rn(v1);
    }
}

// ---- reductions: fixed order, so results do not depend on the grid ----------------------
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block; every thread gets the same value. `scratch` holds one float per warp.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < warps; ++w) total += scratch[w];
    return total;
}

// ---- async copies, ldmatrix and mma.sync (sm_80+) ------------------------------------
__device__ __forceinline__ unsigned smem_addr(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// 16-byte global->shared copy; when !pred the destination is zero-filled and src not read.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool pred) {
    const int bytes = pred ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(bytes));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// d += a·b for a 16x16 (row) by 16x8 (col) FP16 tile with FP32 accumulators.
__device__ __forceinline__ void mma_16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Eight FP16 values (16 bytes) as floats.
__device__ __forceinline__ void unpack8(uint4 v, float (&f)[8]) {
    const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 t = __half22float2(h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}

__device__ __forceinline__ unsigned pack_half2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&h);
}

}  // namespace rs
