/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * TCP sockets from the tracepoints: open, state changes, bytes, retransmits, RTT, and the close
 * summary. Keyed by the struct sock address. These hooks often run in softirq or on behalf of
 * another task, so identity comes from the socket (sk->sk_cgrp_data), never from `current`.
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

/* RTT and segment counters straight from the tcp_sock; cheap enough at sampling points. */
static __always_inline void read_tcp_counters(struct strata_sock_stats *stats, struct sock *sk)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u32 srtt8 = 0, min_rtt = 0, segs_in = 0, segs_out = 0;
	if (bpf_core_read(&srtt8, sizeof(srtt8), &tp->srtt_us) ||
	    bpf_core_read(&min_rtt, sizeof(min_rtt), &tp->rtt_min.s[0].v) ||
	    bpf_core_read(&segs_in, sizeof(segs_in), &tp->segs_in) ||
	    bpf_core_read(&segs_out, sizeof(segs_out), &tp->segs_out)) {
		count(STRATA_COUNTER_KERNEL_READ_FAILED);
		return;
	}
	if (srtt8)
		stats->srtt_us = srtt8 >> 3;
	/* ~0U means "no sample yet" in the kernel's windowed min filter */
	if (min_rtt != ~0U)
		stats->min_rtt_us = min_rtt;
	stats->segs_in = segs_in;
	stats->segs_out = segs_out;
}

/* A socket seen for the first time after its handshake (the agent started later, or LRU evicted
 * it): start tracking from here, without an open time or a role. */
static __always_inline struct strata_sock_stats *track_late(strata_sock_id id, struct sock *sk,
							    __u64 now)
{
	struct strata_sock_stats fresh = {};
	if (tuple_from_sock(&fresh.tuple, sk)) {
		count(STRATA_COUNTER_KERNEL_READ_FAILED);
		return 0;
	}
	fresh.cgroup_id = socket_cgroup_id(sk);
	fresh.last_seen_ns = now;
	fresh.state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (fresh.state == STRATA_TCP_LISTEN || fresh.state == STRATA_TCP_CLOSE)
		return 0;
	/* EEXIST: another CPU started tracking it first, which is as good */
	long err = bpf_map_update_elem(&sock_stats, &id, &fresh, BPF_NOEXIST);
	if (err && err != -STRATA_EEXIST)
		count(STRATA_COUNTER_SOCK_STATS_UPDATE_FAILED);
	return bpf_map_lookup_elem(&sock_stats, &id);
}

/* Bytes the stack received, read or not. A socket reaches TCP_CLOSE (and leaves the map) when the
 * peer's FIN completes the close, often before the application drains its receive queue, so reads
 * after that are not seen by sock_recv_length; the stack's total covers them. The peer's FIN takes
 * one sequence number, which the total counts and we do not. */
static __always_inline void read_tcp_bytes_received(struct strata_sock_stats *stats, struct sock *sk)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u64 received = 0;
	__u8 shutdown = 0;
	if (bpf_core_read(&received, sizeof(received), &tp->bytes_received) ||
	    bpf_core_read(&shutdown, sizeof(shutdown), &sk->sk_shutdown)) {
		count(STRATA_COUNTER_KERNEL_READ_FAILED);
		return;
	}
	if ((shutdown & STRATA_RCV_SHUTDOWN) && received > 0)
		received -= 1;
	if (received > stats->bytes_received)
		stats->bytes_received = received;
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
		read_tcp_bytes_received(stats, sk);
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
		struct strata_sock_stats fresh = {};
		tuple_from_state_change(&fresh.tuple, ctx);
		fresh.cgroup_id = socket_cgroup_id(sk);
		fresh.opened_ns = now;
		fresh.last_seen_ns = now;
		fresh.role = newstate == STRATA_TCP_SYN_SENT ? STRATA_ROLE_CLIENT : STRATA_ROLE_SERVER;
		fresh.state = newstate;
		if (bpf_map_update_elem(&sock_stats, &id, &fresh, BPF_ANY))
			count(STRATA_COUNTER_SOCK_STATS_UPDATE_FAILED);
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
	stats->state = newstate;
	stats->last_seen_ns = now;
	return 0;
}

/* `len`: what sendmsg/recvmsg returned. */
static __always_inline void account_bytes(struct sock *sk, int len, int flags, int sending)
{
	/* errors are negative; a peek (MSG_PEEK) will be read again and counted then */
	if (len <= 0 || (!sending && (flags & STRATA_MSG_PEEK)))
		return;
	strata_sock_id id = (strata_sock_id)sk;
	__u64 now = bpf_ktime_get_ns();
	struct strata_sock_stats *stats = bpf_map_lookup_elem(&sock_stats, &id);
	if (!stats) {
		stats = track_late(id, sk, now);
		if (!stats)
			return;
	}
	/* send and receive of one socket can run on two CPUs at once */
	if (sending)
		__sync_fetch_and_add(&stats->bytes_sent, len);
	else
		__sync_fetch_and_add(&stats->bytes_received, len);
	stats->last_seen_ns = now;
}

/*
 * The per-segment and per-call hooks come twice: as BTF tracepoints (tp_btf), which get the
 * kernel's arguments as they are, and as classic tracepoints, for which the kernel first builds
 * the event's trace record (for tcp_probe, a dozen tcp_sock fields and the socket cookie) on
 * every call. The loader attaches the tp_btf one and falls back to the classic one.
 */
SEC("tracepoint/sock/sock_send_length")
int strata_sock_send_length(struct trace_event_raw_sock_msg_length *ctx)
{
	if (ctx->protocol == STRATA_IPPROTO_TCP)
		account_bytes((struct sock *)ctx->sk, ctx->ret, ctx->flags, 1);
	return 0;
}

SEC("tracepoint/sock/sock_recv_length")
int strata_sock_recv_length(struct trace_event_raw_sock_msg_length *ctx)
{
	if (ctx->protocol == STRATA_IPPROTO_TCP)
		account_bytes((struct sock *)ctx->sk, ctx->ret, ctx->flags, 0);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(strata_sock_send_length_btf, struct sock *sk, int ret, int flags)
{
	if (BPF_CORE_READ(sk, sk_protocol) == STRATA_IPPROTO_TCP)
		account_bytes(sk, ret, flags, 1);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(strata_sock_recv_length_btf, struct sock *sk, int ret, int flags)
{
	if (BPF_CORE_READ(sk, sk_protocol) == STRATA_IPPROTO_TCP)
		account_bytes(sk, ret, flags, 0);
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

/* Fires for every received segment on an established socket, so it only records a sample when the
 * previous one is older than rtt_sample_interval_ns. Segment counters ride along. `srtt`: µs,
 * or 0 to read it from the socket. */
static __always_inline void sample_rtt(struct sock *sk, __u32 srtt)
{
	strata_sock_id id = (strata_sock_id)sk;
	struct strata_sock_stats *stats = bpf_map_lookup_elem(&sock_stats, &id);
	if (!stats)
		return;
	__u64 now = bpf_ktime_get_ns();
	if (now - stats->last_rtt_sample_ns < rtt_sample_interval_ns)
		return;
	stats->last_rtt_sample_ns = now;
	read_tcp_counters(stats, sk);
	if (!srtt)
		srtt = stats->srtt_us;
	if (srtt) {
		stats->srtt_us = srtt;
		stats->srtt_sum_us += srtt;
		stats->rtt_samples += 1;
	}
	stats->last_seen_ns = now;
}

SEC("tracepoint/tcp/tcp_probe")
int strata_tcp_probe(struct trace_event_raw_tcp_probe *ctx)
{
	sample_rtt((struct sock *)ctx->skaddr, ctx->srtt);
	return 0;
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(strata_tcp_probe_btf, struct sock *sk, struct sk_buff *skb)
{
	sample_rtt(sk, 0);
	return 0;
}

#endif /* STRATA_SOCKET_LIFECYCLE_H */
