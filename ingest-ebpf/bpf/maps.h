/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * Maps shared by the programs, the per-CPU loss counters and the ring-buffer writer.
 * Sizes here are defaults; the loader resizes `events`, `sock_stats` and `dns_pending` from config.
 */
#ifndef STRATA_MAPS_H
#define STRATA_MAPS_H

/* Tunables the loader may set before load (.rodata). */
/* Unread bytes in `events` past which a write wakes the reader; below it the reader's tick drains. */
const volatile __u64 ringbuf_wakeup_bytes = 1024 * 1024;

/* events: 8 MiB; when full: the record is dropped and counted (STRATA_COUNTER_RINGBUF_LOST_*). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} events SEC(".maps");

/* sock_stats: 65536 live TCP sockets; when full: LRU evicts the least recently updated socket,
 * whose close then counts STRATA_COUNTER_SOCK_STATS_MISSING; user space reports the fill. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, strata_sock_id);
	__type(value, struct strata_sock_stats);
} sock_stats SEC(".maps");

/* dns_pending: 16384 queries in flight; when full: LRU evicts the oldest, whose response then
 * counts STRATA_COUNTER_DNS_UNMATCHED and is reported without latency. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct strata_dns_key);
	__type(value, __u64);
} dns_pending SEC(".maps");

/* http_pending: the head of a socket's pending request when its exchange goes to the ring (traced, or
 * no free slot), freed by the kernel with the socket, so it cannot leak. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct strata_http_pending);
} http_pending SEC(".maps");

/* http_epoch: one u32 that user space advances after each read of sock_stats; an HTTP slot whose
 * epoch is older starts its latency maximum again, so the maximum read covers one interval. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} http_epoch SEC(".maps");

/* counters: one u64 per STRATA_COUNTER_* slot per CPU, summed by user space. Per-CPU so counting
 * needs no atomics; an increment interrupted by a nested program on the same CPU may rarely be
 * lost, which is acceptable for loss accounting. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STRATA_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Events too large for the 512-byte BPF stack are assembled here. A program can be interrupted on
 * its CPU by a softirq that runs another of our programs (an egress in process context by an
 * ingress, say), so each CPU holds a small stack of slots and a depth: acquire takes the next slot,
 * release gives it back, and interrupts nest and unwind in order. */
#define STRATA_SCRATCH_DEPTH 3

union strata_scratch {
	struct strata_conn_closed conn;
	struct strata_dns_message dns;
	struct strata_sock_stats stats; /* a new sock_stats entry, too large for the stack */
	/* a request's head, searched for traceparent; the tail lets a word be read at any offset
	 * the scan reaches (a step's last word, and a name after a line feed in it) */
	__u8 http_head[STRATA_HTTP_TRACEPARENT_SCAN + 16];
};

struct strata_scratch_stack {
	__u32 depth;
	__u32 _pad;
	union strata_scratch slots[STRATA_SCRATCH_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct strata_scratch_stack);
} scratch SEC(".maps");

/* A length in 1..cap (cap a power of two) on the very register handed to a helper: the verifier
 * needs the bound there, and clang may otherwise test a copy. Identity for lengths already in
 * range; the empty asm keeps clang from proving the mask redundant and dropping it. */
static __always_inline __u32 bound_len(__u32 len, __u32 cap)
{
	asm volatile("" : "+r"(len));
	return ((len - 1) & (cap - 1)) + 1;
}

static __always_inline void count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &slot);
	if (value)
		*value += 1;
}

static __always_inline union strata_scratch *scratch_acquire(void)
{
	__u32 zero = 0;
	struct strata_scratch_stack *stack = bpf_map_lookup_elem(&scratch, &zero);
	if (!stack || stack->depth >= STRATA_SCRATCH_DEPTH) {
		count(STRATA_COUNTER_SCRATCH_MISSING);
		return 0;
	}
	__u32 depth = stack->depth;
	stack->depth = depth + 1;
	if (depth >= STRATA_SCRATCH_DEPTH) /* restated for the verifier's bounds */
		return 0;
	return &stack->slots[depth];
}

static __always_inline void scratch_release(void)
{
	__u32 zero = 0;
	struct strata_scratch_stack *stack = bpf_map_lookup_elem(&scratch, &zero);
	if (stack && stack->depth > 0)
		stack->depth -= 1;
}

/* Wakeups are batched: a write only wakes the reader once the unread backlog passes the threshold;
 * otherwise the reader's own tick picks the record up. Per-record wakeups cost about five times
 * the CPU at high event rates (DESIGN §4). */
static __always_inline __u64 emit_flags(void)
{
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= ringbuf_wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void emit(void *record, __u64 size, __u32 lost_slot)
{
	if (bpf_ringbuf_output(&events, record, size, emit_flags()))
		count(lost_slot);
}

#endif /* STRATA_MAPS_H */
