/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * TCP sockets from the tracepoints: open, state changes, retransmits, the close summary; and the
 * live sockets' own byte, segment and RTT counters, refreshed by an iterator before each read of
 * sock_stats. Keyed by the struct sock address. The tracepoints often run in softirq or on behalf
 * of another task, so identity comes from the socket (sk->sk_cgrp_data), never from `current`.
 */
#ifndef STRATA_SOCKET_LIFECYCLE_H
#define STRATA_SOCKET_LIFECYCLE_H

static __always_inline void map_ipv4(__u8 addr[16])
{
	/* ::ffff:a.b.c.d; the last four bytes are written by the caller */
	__builtin_memset(addr, 0, 10);
	addr[10] = 0xff;
	addr[11] = 0xff;
}

static __always_inline __u64 socket_cgroup_id(struct sock *sk)
{
	/* The cgroup the socket was created in (inherited by accepted children from the listener). */
	return BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
}

/* The tuple as the tracepoint saw it. Re-read at each transition: at SYN_SENT the source port is
 * not yet chosen, and an accepted child only learns its addresses after SYN_RECV. */
static __always_inline void tuple_from_state_change(struct strata_flow_tuple *tuple,
						    struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u16 family = ctx->family;
	if (family == STRATA_AF_INET) {
		map_ipv4(tuple->local_addr);
		map_ipv4(tuple->remote_addr);
		bpf_core_read(&tuple->local_addr[12], 4, &ctx->saddr);
		bpf_core_read(&tuple->remote_addr[12], 4, &ctx->daddr);
	} else {
		bpf_core_read(tuple->local_addr, 16, &ctx->saddr_v6);
		bpf_core_read(tuple->remote_addr, 16, &ctx->daddr_v6);
	}
	tuple->local_port = ctx->sport;
	tuple->remote_port = ctx->dport;
	tuple->family = family;
	tuple->protocol = STRATA_IPPROTO_TCP;
}

/* The tuple from the socket itself, for sockets first seen after they were established. */
static __always_inline int tuple_from_sock(struct strata_flow_tuple *tuple, struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == STRATA_AF_INET) {
		map_ipv4(tuple->local_addr);
		map_ipv4(tuple->remote_addr);
		if (bpf_core_read(&tuple->local_addr[12], 4, &sk->__sk_common.skc_rcv_saddr) ||
		    bpf_core_read(&tuple->remote_addr[12], 4, &sk->__sk_common.skc_daddr))
			return -1;
	} else if (family == STRATA_AF_INET6) {
		if (bpf_core_read(tuple->local_addr, 16, &sk->__sk_common.skc_v6_rcv_saddr) ||
		    bpf_core_read(tuple->remote_addr, 16, &sk->__sk_common.skc_v6_daddr))
			return -1;
	} else {
		return -1;
	}
	tuple->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	tuple->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	tuple->family = family;
	tuple->protocol = STRATA_IPPROTO_TCP;
	return 0;
}

/*
 * What the socket's own counters say, read at points that already run (a state change, the
 * close) and by the iterator before each read, instead of on every send and receive call. The
 * kernel keeps them per tcp_sock: payload bytes transmitted with retransmissions counted apart,
 * bytes taken into the receive sequence (a FIN takes one), segments, RTT.
 */
struct strata_tcp_snapshot {
	__u64 bytes_sent;    /* tcp_sock.bytes_sent: payload transmitted, retransmissions included */
	__u64 bytes_retrans; /* tcp_sock.bytes_retrans: payload retransmitted */
	__u64 bytes_received; /* tcp_sock.bytes_received: RFC 4898 ThruOctetsReceived, a FIN counts one */
	__u32 segs_in;
	__u32 segs_out;
	__u32 srtt8;   /* smoothed RTT << 3, µs */
	__u32 min_rtt; /* µs; ~0U before the first sample */
	__u8 shutdown; /* sk_shutdown: RCV_SHUTDOWN once the peer's FIN arrived */
};

/* Through probe reads: the tracepoints' records and the map's keys carry only an address. */
static __always_inline int snapshot_probe_read(struct strata_tcp_snapshot *snap, struct sock *sk)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	return bpf_core_read(&snap->bytes_sent, sizeof(snap->bytes_sent), &tp->bytes_sent) ||
	       bpf_core_read(&snap->bytes_retrans, sizeof(snap->bytes_retrans), &tp->bytes_retrans) ||
	       bpf_core_read(&snap->bytes_received, sizeof(snap->bytes_received),
			     &tp->bytes_received) ||
	       bpf_core_read(&snap->segs_in, sizeof(snap->segs_in), &tp->segs_in) ||
	       bpf_core_read(&snap->segs_out, sizeof(snap->segs_out), &tp->segs_out) ||
	       bpf_core_read(&snap->srtt8, sizeof(snap->srtt8), &tp->srtt_us) ||
	       bpf_core_read(&snap->min_rtt, sizeof(snap->min_rtt), &tp->rtt_min.s[0].v) ||
	       bpf_core_read(&snap->shutdown, sizeof(snap->shutdown), &sk->sk_shutdown);
}

/* The counters as the flow records count them, which only move forward: the stack's bytes less
 * retransmissions and less the peer's FIN, so that at the close they equal what the application
 * wrote and what it could read. A socket first seen mid-connection reports everything since it
 * opened, like its segment counters. */
static __always_inline void apply_snapshot(struct strata_sock_stats *stats,
					   const struct strata_tcp_snapshot *snap)
{
	__u64 sent = snap->bytes_sent - snap->bytes_retrans;
	__u64 received = snap->bytes_received;
	if ((snap->shutdown & STRATA_RCV_SHUTDOWN) && received > 0)
		received -= 1;
	if (sent > stats->bytes_sent)
		stats->bytes_sent = sent;
	if (received > stats->bytes_received)
		stats->bytes_received = received;
	stats->segs_in = snap->segs_in;
	stats->segs_out = snap->segs_out;
	if (snap->srtt8)
		stats->srtt_us = snap->srtt8 >> 3;
	/* ~0U means "no sample yet" in the kernel's windowed min filter */
	if (snap->min_rtt != ~0U)
		stats->min_rtt_us = snap->min_rtt;
}

static __always_inline void read_tcp_counters(struct strata_sock_stats *stats, struct sock *sk)
{
	struct strata_tcp_snapshot snap = {};
	if (snapshot_probe_read(&snap, sk)) {
		count(STRATA_COUNTER_KERNEL_READ_FAILED);
		return;
	}
	apply_snapshot(stats, &snap);
}

/* A zeroed sock_stats value in a scratch slot, for a new entry (too large for the stack); the
 * caller fills it and hands it to insert_late, or releases the slot. */
static __always_inline struct strata_sock_stats *fresh_stats(void)
{
	union strata_scratch *slot = scratch_acquire();
	if (!slot)
		return 0;
	__builtin_memset(&slot->stats, 0, sizeof(slot->stats));
	return &slot->stats;
}

/* Inserts `fresh` (from fresh_stats) for a socket first seen after its handshake, unless another
 * program got there first, which is as good; releases the scratch slot; returns the entry. */
static __always_inline struct strata_sock_stats *insert_late(strata_sock_id id,
							     struct strata_sock_stats *fresh)
{
	long err = bpf_map_update_elem(&sock_stats, &id, fresh, BPF_NOEXIST);
	scratch_release();
	if (err && err != -STRATA_EEXIST)
		count(STRATA_COUNTER_SOCK_STATS_UPDATE_FAILED);
	return bpf_map_lookup_elem(&sock_stats, &id);
}

/* A socket seen for the first time after its handshake (the agent started later, or LRU evicted
 * it): start tracking from here, without an open time or a role. */
static __always_inline struct strata_sock_stats *track_late(strata_sock_id id, struct sock *sk,
							    __u64 now)
{
	__u8 state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (state == STRATA_TCP_LISTEN || state == STRATA_TCP_CLOSE)
		return 0;
	struct strata_sock_stats *fresh = fresh_stats();
	if (!fresh)
		return 0;
	if (tuple_from_sock(&fresh->tuple, sk)) {
		count(STRATA_COUNTER_KERNEL_READ_FAILED);
		scratch_release();
		return 0;
	}
	fresh->cgroup_id = socket_cgroup_id(sk);
	fresh->last_seen_ns = now;
	fresh->state = state;
	return insert_late(id, fresh);
}

static __always_inline void close_socket(struct trace_event_raw_inet_sock_set_state *ctx,
					 strata_sock_id id, struct sock *sk, __u64 now)
{
	struct strata_sock_stats *stats = bpf_map_lookup_elem(&sock_stats, &id);
	if (!stats) {
		if (ctx->oldstate != STRATA_TCP_LISTEN)
			count(STRATA_COUNTER_SOCK_STATS_MISSING);
		return;
	}
	union strata_scratch *slot = scratch_acquire();
	if (slot) {
		struct strata_conn_closed *event = &slot->conn;
		tuple_from_state_change(&stats->tuple, ctx);
		read_tcp_counters(stats, sk);
		stats->state = STRATA_TCP_CLOSE;
		stats->last_seen_ns = now;
		event->header.kind = STRATA_EVENT_CONN_CLOSED;
		event->header._pad = 0;
		event->sock_id = id;
		event->closed_ns = now;
		__builtin_memcpy(&event->stats, stats, sizeof(event->stats));
		event->sk_err = BPF_CORE_READ(sk, sk_err);
		event->old_state = ctx->oldstate;
		event->_pad[0] = event->_pad[1] = event->_pad[2] = 0;
		emit(event, sizeof(*event), STRATA_COUNTER_RINGBUF_LOST_CONN);
		scratch_release();
	}
	bpf_map_delete_elem(&sock_stats, &id);
}

SEC("tracepoint/sock/inet_sock_set_state")
int strata_inet_sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != STRATA_IPPROTO_TCP)
		return 0;
	strata_sock_id id = (strata_sock_id)ctx->skaddr;
	struct sock *sk = (struct sock *)ctx->skaddr;
	int newstate = ctx->newstate;
	__u64 now = bpf_ktime_get_ns();

	if (newstate == STRATA_TCP_SYN_SENT || newstate == STRATA_TCP_SYN_RECV) {
		/* CLOSE -> SYN_SENT is connect(); LISTEN -> SYN_RECV is a child of a listener. */
		struct strata_sock_stats *fresh = fresh_stats();
		if (!fresh)
			return 0;
		tuple_from_state_change(&fresh->tuple, ctx);
		fresh->cgroup_id = socket_cgroup_id(sk);
		fresh->opened_ns = now;
		fresh->last_seen_ns = now;
		fresh->role = newstate == STRATA_TCP_SYN_SENT ? STRATA_ROLE_CLIENT : STRATA_ROLE_SERVER;
		fresh->state = newstate;
		if (bpf_map_update_elem(&sock_stats, &id, fresh, BPF_ANY))
			count(STRATA_COUNTER_SOCK_STATS_UPDATE_FAILED);
		scratch_release();
		return 0;
	}
	if (newstate == STRATA_TCP_CLOSE) {
		close_socket(ctx, id, sk, now);
		return 0;
	}

	struct strata_sock_stats *stats = bpf_map_lookup_elem(&sock_stats, &id);
	if (!stats) {
		if (newstate != STRATA_TCP_ESTABLISHED)
			return 0;
		stats = track_late(id, sk, now);
		if (!stats)
			return 0;
	}
	if (newstate == STRATA_TCP_ESTABLISHED) {
		tuple_from_state_change(&stats->tuple, ctx);
		stats->cgroup_id = socket_cgroup_id(sk);
		stats->established_ns = now;
	}
	/* Each state change brings the counters up to date, as the close does. */
	read_tcp_counters(stats, sk);
	stats->state = newstate;
	stats->last_seen_ns = now;
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int strata_tcp_retransmit_skb(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	strata_sock_id id = (strata_sock_id)ctx->skaddr;
	struct strata_sock_stats *stats = bpf_map_lookup_elem(&sock_stats, &id);
	if (stats)
		__sync_fetch_and_add(&stats->retransmits, 1);
	return 0;
}

/*
 * The live sockets' counters, refreshed from the sockets themselves just before user space reads
 * sock_stats: an iterator over the map's entries, run by the flow tracker at each scan, instead of
 * a program on every received segment. The entry's key is the socket's address. A socket whose
 * segment counters did not move since the last read has nothing new (every byte, acknowledgement,
 * RTT sample and FIN comes with a segment): three reads, and it is marked seen while it is open.
 * Otherwise an entry whose socket closed while the iterator ran (TCP sockets are freed only after
 * an RCU grace period, and the iterator holds the RCU read lock) is told apart by its ports and
 * state, and left alone. The RTT is sampled here too, once per scan for a socket that received
 * segments since the last.
 */
static __always_inline void refresh_entry(struct strata_sock_stats *stats, struct sock *sk)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	if (stats->state == STRATA_TCP_SYN_SENT || stats->state == STRATA_TCP_SYN_RECV ||
	    stats->state == STRATA_TCP_CLOSE)
		return; /* no counters before the handshake completes; a close is final */
	__u32 segs_in = 0, segs_out = 0;
	__u8 state = STRATA_TCP_CLOSE;
	if (bpf_core_read(&segs_in, sizeof(segs_in), &tp->segs_in) ||
	    bpf_core_read(&segs_out, sizeof(segs_out), &tp->segs_out) ||
	    bpf_core_read(&state, sizeof(state), &sk->__sk_common.skc_state)) {
		count(STRATA_COUNTER_KERNEL_READ_FAILED);
		return;
	}
	if (state == STRATA_TCP_CLOSE || state == STRATA_TCP_LISTEN)
		return;
	__u64 now = bpf_ktime_get_ns();
	if (segs_in == stats->segs_in && segs_out == stats->segs_out) {
		stats->last_seen_ns = now;
		return;
	}
	__u16 local_port = 0, remote_port = 0;
	if (bpf_core_read(&local_port, sizeof(local_port), &sk->__sk_common.skc_num) ||
	    bpf_core_read(&remote_port, sizeof(remote_port), &sk->__sk_common.skc_dport)) {
		count(STRATA_COUNTER_KERNEL_READ_FAILED);
		return;
	}
	if (local_port != stats->tuple.local_port || bpf_ntohs(remote_port) != stats->tuple.remote_port)
		return;
	struct strata_tcp_snapshot snap = {};
	if (snapshot_probe_read(&snap, sk)) {
		count(STRATA_COUNTER_KERNEL_READ_FAILED);
		return;
	}
	__u32 srtt = snap.srtt8 >> 3;
	if (snap.segs_in != stats->segs_in && srtt) {
		stats->srtt_sum_us += srtt;
		stats->rtt_samples += 1;
		stats->last_rtt_sample_ns = now;
	}
	apply_snapshot(stats, &snap);
	stats->last_seen_ns = now;
}

/* Each entry, refreshed, is written to the run's output as its key then its value, so user space
 * reads the whole map in one stream instead of a lookup per entry. */
SEC("iter/bpf_map_elem")
int strata_sock_stats_refresh(struct strata_iter_map_elem *ctx)
{
	const strata_sock_id *key = ctx->key;
	struct strata_sock_stats *stats = ctx->value;
	if (!key || !stats)
		return 0;
	refresh_entry(stats, (struct sock *)*key);
	void *seq = ctx->meta->seq;
	bpf_seq_write(seq, key, sizeof(*key));
	bpf_seq_write(seq, stats, sizeof(*stats));
	return 0;
}

#endif /* STRATA_SOCKET_LIFECYCLE_H */
