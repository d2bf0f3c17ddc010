/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * HTTP/1.x on TCP, per socket, seen on the client socket (request egress, response ingress) and on
 * the server socket (the reverse), so latency is measured on both ends. The first segment of a
 * request is timestamped in the socket's sock_stats entry; the first segment of the final
 * response that travels the other way completes it, and the exchange is counted there, in the
 * slot of its (method, status, role) with its latency bucket: no record, no user-space work per
 * request. Only an exchange user space must see goes to the ring with the request's head: one
 * whose request carries a sampled `traceparent` (spans, exemplars, trace ids), or one for which no
 * slot is free. Pipelined requests keep only the latest (counted).
 */
#ifndef STRATA_HTTP_H
#define STRATA_HTTP_H

/* An exchange record's length before the request capture, which it carries only as captured. */
#define STRATA_HTTP_EXCHANGE_FIXED_LEN __builtin_offsetof(struct strata_http_exchange, request)

#define STRATA_HTTP_NEITHER 0
#define STRATA_HTTP_REQUEST 1
#define STRATA_HTTP_RESPONSE 2

/* Upper bounds of the latency buckets, ns: the semantic-convention buckets of
 * http.server.request.duration (0.005 s … 10 s); the last bucket holds the rest. */
static const __u64 http_bucket_bounds_ns[STRATA_HTTP_BUCKETS - 1] = {
	5000000ULL,   10000000ULL,  25000000ULL,   50000000ULL,   75000000ULL,
	100000000ULL, 250000000ULL, 500000000ULL,  750000000ULL,  1000000000ULL,
	2500000000ULL, 5000000000ULL, 7500000000ULL, 10000000000ULL,
};

static __always_inline int starts_with(const __u8 *head, const char *prefix, int len)
{
	for (int i = 0; i < len; i++)
		if (head[i] != (__u8)prefix[i])
			return 0;
	return 1;
}

/* Four bytes as one word, the same way on both sides of a comparison, whatever the byte order. */
#define STRATA_WORD(a, b, c, d) \
	((__u32)(__u8)(a) | (__u32)(__u8)(b) << 8 | (__u32)(__u8)(c) << 16 | (__u32)(__u8)(d) << 24)

static __always_inline int is_digit(__u8 c)
{
	return c >= '0' && c <= '9';
}

/* What a payload starts with: a request line (the nine methods of RFC 9110 and PATCH; `method`
 * gets its STRATA_HTTP_METHOD_*), a final response ("HTTP/1.x NNN" with NNN three digits, not
 * 1xx: interim responses such as 100 Continue come before the real one on the same request and
 * must not complete the exchange), or neither. Most payloads are told apart by their first word. */
static __always_inline int classify_http(const __u8 *head, __u8 *method)
{
	switch (STRATA_WORD(head[0], head[1], head[2], head[3])) {
	case STRATA_WORD('G', 'E', 'T', ' '):
		*method = STRATA_HTTP_METHOD_GET;
		return STRATA_HTTP_REQUEST;
	case STRATA_WORD('P', 'U', 'T', ' '):
		*method = STRATA_HTTP_METHOD_PUT;
		return STRATA_HTTP_REQUEST;
	case STRATA_WORD('P', 'O', 'S', 'T'):
		*method = STRATA_HTTP_METHOD_POST;
		return head[4] == ' ' ? STRATA_HTTP_REQUEST : STRATA_HTTP_NEITHER;
	case STRATA_WORD('H', 'E', 'A', 'D'):
		*method = STRATA_HTTP_METHOD_HEAD;
		return head[4] == ' ' ? STRATA_HTTP_REQUEST : STRATA_HTTP_NEITHER;
	case STRATA_WORD('D', 'E', 'L', 'E'):
		*method = STRATA_HTTP_METHOD_DELETE;
		return starts_with(head + 4, "TE ", 3) ? STRATA_HTTP_REQUEST : STRATA_HTTP_NEITHER;
	case STRATA_WORD('P', 'A', 'T', 'C'):
		*method = STRATA_HTTP_METHOD_PATCH;
		return starts_with(head + 4, "H ", 2) ? STRATA_HTTP_REQUEST : STRATA_HTTP_NEITHER;
	case STRATA_WORD('O', 'P', 'T', 'I'):
		*method = STRATA_HTTP_METHOD_OPTIONS;
		return starts_with(head + 4, "ONS ", 4) ? STRATA_HTTP_REQUEST : STRATA_HTTP_NEITHER;
	case STRATA_WORD('C', 'O', 'N', 'N'):
		*method = STRATA_HTTP_METHOD_CONNECT;
		return starts_with(head + 4, "ECT ", 4) ? STRATA_HTTP_REQUEST : STRATA_HTTP_NEITHER;
	case STRATA_WORD('T', 'R', 'A', 'C'):
		*method = STRATA_HTTP_METHOD_TRACE;
		return starts_with(head + 4, "E ", 2) ? STRATA_HTTP_REQUEST : STRATA_HTTP_NEITHER;
	case STRATA_WORD('H', 'T', 'T', 'P'):
		return starts_with(head + 4, "/1.", 3) && head[8] == ' ' && head[9] != '1' &&
				       is_digit(head[9]) && is_digit(head[10]) && is_digit(head[11])
			       ? STRATA_HTTP_RESPONSE
			       : STRATA_HTTP_NEITHER;
	default:
		return STRATA_HTTP_NEITHER;
	}
}

/* "traceparent:" as header names compare (ASCII case-insensitive): the first eight bytes as a
 * little-endian word with the case bit set, and the rest. */
#define STRATA_TRACEPARENT_WORD 0x7261706563617274ULL /* "tracepar" */

static __always_inline __u64 load_word(const __u8 *bytes)
{
	__u64 word;
	__builtin_memcpy(&word, bytes, sizeof(word));
	return word;
}

/* A version 00 traceparent value's length, and the shortest first segment that can carry one:
 * the shortest request line, a line feed before the name, "traceparent:" and the value. */
#define STRATA_TRACEPARENT_VALUE_LEN 55
#define STRATA_TRACEPARENT_MIN_REQUEST (STRATA_HTTP_MIN_PAYLOAD + 1 + 12 + STRATA_TRACEPARENT_VALUE_LEN)

/* Bytes one scan step looks at: eight words. */
#define STRATA_SCAN_STEP 64

struct strata_traceparent_scan {
	union strata_scratch *slot; /* holding the head */
	__u32 len;                  /* bytes of it loaded */
	__u32 found;                /* the value's offset plus one; 0: none */
};

/* Whether a `traceparent:` name starts after the line feed at `at` (a line feed or not). */
static __always_inline int traceparent_after(const __u8 *head, __u32 at, __u32 len)
{
	return head[at] == '\n' && at + 13 <= len &&
	       (load_word(head + at + 1) | 0x2020202020202020ULL) == STRATA_TRACEPARENT_WORD &&
	       (head[at + 9] | 0x20) == 'e' && (head[at + 10] | 0x20) == 'n' &&
	       (head[at + 11] | 0x20) == 't' && head[at + 12] == ':';
}

/* Where the value of the `traceparent` whose name starts after the line feed at `at` begins: after
 * at most two spaces or tabs. `& (SCAN - 1)`: bounds for the verifier, the identity below `len`. */
static __always_inline __u32 traceparent_value(const __u8 *head, __u32 at, __u32 len)
{
	__u32 value = at + 13;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		__u8 c = head[value & (STRATA_HTTP_TRACEPARENT_SCAN - 1)];
		if (value < len && (c == ' ' || c == '\t'))
			value++;
	}
	return value;
}

/* Whether a `traceparent` value at `value` says its trace is not sampled: the last of its 55
 * characters (a version 00 value, whose layout later versions keep) is a hex digit with bit 0
 * clear. Such a request is counted like one without trace context: the application decided not to
 * record its trace, so no span is made for it and no exemplar names it. A value cut short by the
 * searched bytes' end reads as sampled (user space then decides). */
static __always_inline int traceparent_unsampled(const __u8 *head, __u32 value, __u32 len)
{
	__u32 last = value + STRATA_TRACEPARENT_VALUE_LEN - 1;
	if (last >= len)
		return 0;
	__u8 c = head[last & (STRATA_HTTP_TRACEPARENT_SCAN - 1)];
	__u8 digit = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
	return !(digit & 1);
}

/* Word arithmetic on bytes as loaded from memory: the flag of byte `i` in a mask made by
 * bytes_equal, and the eight bytes that follow each byte of `word` (from `next`, the word after
 * it). */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define STRATA_BYTE_FLAG(i) (0x80ULL << ((i) * 8))
#define STRATA_BYTES_AFTER(word, next) (((word) >> 8) | ((next) << 56))
#else
#define STRATA_BYTE_FLAG(i) (0x80ULL << ((7 - (i)) * 8))
#define STRATA_BYTES_AFTER(word, next) (((word) << 8) | ((next) >> 56))
#endif

/* A mask flagging the bytes of `word` equal to `byte`: never misses one; may also flag a byte that
 * differs from `byte` in its lowest bit only, just above a flagged one (the callers look again). */
static __always_inline __u64 bytes_equal(__u64 word, __u8 byte)
{
	__u64 x = word ^ (0x0101010101010101ULL * byte);
	return (x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL;
}

/* Whether a `traceparent:` name starts after one of the bytes of the word at `off` flagged in
 * `starts`, its value not saying unsampled: the value's offset plus one, else 0. A function of its
 * own, verified once: it runs only for a word where a line starts with a `t`, and inlined it would
 * multiply the paths the verifier walks through every step. */
__attribute__((noinline)) __u32 strata_traceparent_in_word(union strata_scratch *slot, __u32 off,
							    __u64 starts, __u32 len)
{
	if (!slot)
		return 0;
	const __u8 *head = slot->http_head;
	off &= STRATA_HTTP_TRACEPARENT_SCAN - 8; /* a word in the head: bounds for the verifier */
#pragma unroll
	for (__u32 i = 0; i < 8; i++) {
		if ((starts & STRATA_BYTE_FLAG(i)) && traceparent_after(head, off + i, len)) {
			__u32 value = traceparent_value(head, off + i, len);
			return traceparent_unsampled(head, value, len) ? 0 : value + 1;
		}
	}
	return 0;
}

/* One step of the scan: eight words, each loaded whole (aligned: the slot and every offset here
 * are multiples of eight), with the bytes after them. Only a word in which a line feed is followed
 * by a `t` or `T` is looked at closely: in a request without traceparent that is rare (a
 * `Transfer-Encoding` line, say), so a word costs a dozen instructions. */
static long scan_step(__u32 step, void *ctx)
{
	struct strata_traceparent_scan *scan = ctx;
	/* masked, not only compared: the verifier bounds the offset by the mask */
	__u32 base = (step & (STRATA_HTTP_TRACEPARENT_SCAN / STRATA_SCAN_STEP - 1)) * STRATA_SCAN_STEP;
	if (step >= STRATA_HTTP_TRACEPARENT_SCAN / STRATA_SCAN_STEP || base >= scan->len)
		return 1;
	const __u8 *head = scan->slot->http_head;
#pragma unroll
	for (__u32 word = 0; word < STRATA_SCAN_STEP / 8; word++) {
		__u32 off = base + word * 8;
		__u64 bytes = *(const __u64 *)(head + off);
		__u64 next = *(const __u64 *)(head + off + 8);
		__u64 starts = bytes_equal(bytes, '\n') &
			       bytes_equal(STRATA_BYTES_AFTER(bytes, next) | 0x2020202020202020ULL, 't');
		if (starts) {
			__u32 found = strata_traceparent_in_word(scan->slot, off, starts, scan->len);
			if (found) {
				scan->found = found;
				return 1;
			}
		}
	}
	return 0;
}

/* Where in a request's first segment (its first STRATA_HTTP_TRACEPARENT_SCAN bytes) the value of a
 * `traceparent` header that does not say unsampled begins, plus one; 0 without one. Eight words a
 * step, looked at closely only where a line starts with `t`. */
static __always_inline __u32 find_traceparent(struct __sk_buff *skb, const struct strata_packet *pkt)
{
	if (pkt->payload_len < STRATA_TRACEPARENT_MIN_REQUEST)
		return 0;
	__u32 len = pkt->payload_len;
	if (len > STRATA_HTTP_TRACEPARENT_SCAN)
		len = STRATA_HTTP_TRACEPARENT_SCAN;
	union strata_scratch *slot = scratch_acquire();
	if (!slot)
		return 0;
	struct strata_traceparent_scan scan = { .slot = slot, .len = len };
	if (bpf_skb_load_bytes(skb, pkt->payload_off, slot->http_head,
			       bound_len(len, STRATA_HTTP_TRACEPARENT_SCAN)))
		count(STRATA_COUNTER_PACKET_READ_FAILED);
	else
		bpf_loop(STRATA_HTTP_TRACEPARENT_SCAN / STRATA_SCAN_STEP, scan_step, &scan, 0);
	scratch_release();
	return scan.found;
}

/* The request's head into socket storage, for an exchange that goes to the ring; and the
 * traceparent's value (at `traceparent - 1` in the payload, when `traceparent` is not 0) on its own
 * when it does not lie whole in the head's capture. */
static __always_inline int capture_request(struct __sk_buff *skb, void *sk,
					   const struct strata_packet *pkt, __u8 role, __u64 now,
					   __u32 traceparent)
{
	__u32 len = pkt->payload_len;
	if (len > STRATA_HTTP_REQUEST_CAPTURE)
		len = STRATA_HTTP_REQUEST_CAPTURE;
	struct strata_http_pending *pending =
		bpf_sk_storage_get(&http_pending, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!pending) {
		count(STRATA_COUNTER_HTTP_STORAGE_FAILED);
		return -1;
	}
	len = bound_len(len, STRATA_HTTP_REQUEST_CAPTURE);
	if (bpf_skb_load_bytes(skb, pkt->payload_off, pending->request, len)) {
		count(STRATA_COUNTER_PACKET_READ_FAILED);
		pending->request_ns = 0;
		return -1;
	}
	pending->traceparent_len = 0;
	__u32 value = traceparent - 1;
	if (traceparent && value + STRATA_TRACEPARENT_VALUE_LEN > len && value < pkt->payload_len) {
		__u32 value_len = pkt->payload_len - value;
		if (value_len > STRATA_TRACEPARENT_CAPTURE)
			value_len = STRATA_TRACEPARENT_CAPTURE;
		value_len = bound_len(value_len, STRATA_TRACEPARENT_CAPTURE);
		if (bpf_skb_load_bytes(skb, pkt->payload_off + value, pending->traceparent, value_len))
			count(STRATA_COUNTER_PACKET_READ_FAILED);
		else
			pending->traceparent_len = value_len;
	}
	pending->request_ns = now;
	pending->request_seq = pkt->tcp_seq;
	pending->request_payload_len = pkt->payload_len;
	pending->request_len = len;
	pending->role = role;
	return 0;
}

static __always_inline void record_request(struct __sk_buff *skb, void *sk,
					   struct strata_sock_stats *stats,
					   const struct strata_packet *pkt, int egress, __u8 method,
					   __u64 now)
{
	if (stats->http_request_ns) {
		if (stats->http_request_seq == pkt->tcp_seq)
			return; /* a retransmission: keep the first timestamp */
		count(STRATA_COUNTER_HTTP_UNANSWERED);
	}
	__u8 role = egress ? STRATA_ROLE_CLIENT : STRATA_ROLE_SERVER;
	__u8 capture = STRATA_HTTP_CAPTURE_NONE;
	__u32 traceparent = find_traceparent(skb, pkt);
	if (traceparent)
		capture = STRATA_HTTP_CAPTURE_TRACED;
	else if (stats->http_slots_full)
		capture = STRATA_HTTP_CAPTURE_SLOTS_FULL;
	if (capture != STRATA_HTTP_CAPTURE_NONE &&
	    capture_request(skb, sk, pkt, role, now, traceparent))
		capture = STRATA_HTTP_CAPTURE_NONE;
	stats->http_request_ns = now;
	stats->http_request_seq = pkt->tcp_seq;
	stats->http_method = method;
	stats->http_role = role;
	stats->http_capture = capture;
}

/* Counts an exchange in the slot of its (method, status, role), taking a free slot for a new
 * combination; 0 when every slot holds another. */
static __always_inline int count_exchange(struct strata_sock_stats *stats, __u16 status,
					  __u64 latency_ns)
{
	__u32 zero = 0;
	__u32 *current_epoch = bpf_map_lookup_elem(&http_epoch, &zero);
	__u32 epoch = current_epoch ? *current_epoch : 0;
	for (int i = 0; i < STRATA_HTTP_SLOTS; i++) {
		struct strata_http_slot *slot = &stats->http[i];
		if (!slot->status) {
			slot->status = status;
			slot->method = stats->http_method;
			slot->role = stats->http_role;
			slot->epoch = epoch;
			if (i == STRATA_HTTP_SLOTS - 1)
				stats->http_slots_full = 1;
		} else if (slot->status != status || slot->method != stats->http_method ||
			   slot->role != stats->http_role) {
			continue;
		}
		if (slot->epoch != epoch) {
			slot->epoch = epoch;
			slot->latency_max_us = 0;
		}
		__u32 bucket = 0;
		for (; bucket < STRATA_HTTP_BUCKETS - 1; bucket++)
			if (latency_ns <= http_bucket_bounds_ns[bucket])
				break;
		if (bucket < STRATA_HTTP_BUCKETS) /* restated for the verifier's bounds */
			slot->buckets[bucket] += 1;
		slot->count += 1;
		slot->latency_sum_ns += latency_ns;
		__u32 latency_us = latency_ns / 1000;
		if (latency_us > slot->latency_max_us)
			slot->latency_max_us = latency_us;
		return 1;
	}
	return 0;
}

/* `head`: the response's first STRATA_HTTP_RESPONSE_CAPTURE bytes, already read to classify it;
 * they hold the status line's version and code, all user space reads of a response. */
static __always_inline void complete_exchange(struct __sk_buff *skb, void *sk,
					      const struct strata_packet *pkt, int egress,
					      const __u8 *head)
{
	struct strata_http_pending *pending = bpf_sk_storage_get(&http_pending, sk, 0, 0);
	if (!pending || !pending->request_ns)
		return;
	/* a response travels against its request: out of a server, into a client */
	if ((pending->role == STRATA_ROLE_SERVER) != !!egress)
		return;
	__u32 request_len = bound_len(pending->request_len, STRATA_HTTP_REQUEST_CAPTURE);

	/* Written in place in the ring, sized to the request actually captured: the fixed part and
	 * the response through a pointer into the record, the request copied once from socket
	 * storage. A reservation must be discarded even when it failed. */
	struct bpf_dynptr record;
	__u64 flags = emit_flags();
	if (bpf_ringbuf_reserve_dynptr(&events, STRATA_HTTP_EXCHANGE_FIXED_LEN + request_len, 0,
				       &record)) {
		bpf_ringbuf_discard_dynptr(&record, 0);
		count(STRATA_COUNTER_RINGBUF_LOST_HTTP);
		return;
	}
	struct strata_http_exchange *event =
		bpf_dynptr_data(&record, 0, STRATA_HTTP_EXCHANGE_FIXED_LEN);
	if (!event) {
		bpf_ringbuf_discard_dynptr(&record, 0);
		return;
	}
	__builtin_memcpy(event->response, head, STRATA_HTTP_RESPONSE_CAPTURE);
	__builtin_memcpy(event->traceparent, pending->traceparent, STRATA_TRACEPARENT_CAPTURE);
	event->traceparent_len = pending->traceparent_len;
	if (bpf_dynptr_write(&record, STRATA_HTTP_EXCHANGE_FIXED_LEN, pending->request, request_len,
			     0)) {
		count(STRATA_COUNTER_PACKET_READ_FAILED);
		bpf_ringbuf_discard_dynptr(&record, 0);
		return;
	}
	event->header.kind = STRATA_EVENT_HTTP_EXCHANGE;
	event->header._pad = 0;
	event->cgroup_id = bpf_skb_cgroup_id(skb);
	event->sock_cookie = bpf_get_socket_cookie(skb);
	event->request_ns = pending->request_ns;
	event->response_ns = bpf_ktime_get_ns();
	tuple_from_packet(&event->tuple, pkt, egress);
	event->role = pending->role;
	event->_pad = 0;
	event->_pad2 = 0;
	event->_pad3[0] = event->_pad3[1] = event->_pad3[2] = 0;
	event->request_payload_len = pending->request_payload_len;
	event->response_len = STRATA_HTTP_RESPONSE_CAPTURE;
	event->request_len = request_len;
	pending->request_ns = 0;
	bpf_ringbuf_submit_dynptr(&record, flags);
}

static __always_inline void record_response(struct __sk_buff *skb, void *sk,
					    struct strata_sock_stats *stats,
					    const struct strata_packet *pkt, int egress, const __u8 *head,
					    __u64 now)
{
	if (!stats->http_request_ns)
		return;
	/* a response travels against its request: out of a server, into a client */
	if ((stats->http_role == STRATA_ROLE_SERVER) != !!egress)
		return;
	__u16 status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
	__u8 capture = stats->http_capture;
	if (capture == STRATA_HTTP_CAPTURE_TRACED ||
	    !count_exchange(stats, status, now - stats->http_request_ns)) {
		if (capture != STRATA_HTTP_CAPTURE_NONE)
			complete_exchange(skb, sk, pkt, egress, head);
		else
			count(STRATA_COUNTER_HTTP_UNCOUNTED);
	} else if (capture != STRATA_HTTP_CAPTURE_NONE) {
		/* counted in a slot after all: the capture is not needed */
		struct strata_http_pending *pending = bpf_sk_storage_get(&http_pending, sk, 0, 0);
		if (pending)
			pending->request_ns = 0;
	}
	stats->http_request_ns = 0;
}

/* The socket's tuple as the socket itself holds it (bpf_sock: no BTF needed). */
static __always_inline void tuple_from_bpf_sock(struct strata_flow_tuple *tuple,
						const struct bpf_sock *sk)
{
	if (sk->family == STRATA_AF_INET) {
		map_ipv4(tuple->local_addr);
		map_ipv4(tuple->remote_addr);
		__u32 local = sk->src_ip4, remote = sk->dst_ip4;
		__builtin_memcpy(&tuple->local_addr[12], &local, 4);
		__builtin_memcpy(&tuple->remote_addr[12], &remote, 4);
	} else {
		__u32 local[4] = { sk->src_ip6[0], sk->src_ip6[1], sk->src_ip6[2], sk->src_ip6[3] };
		__u32 remote[4] = { sk->dst_ip6[0], sk->dst_ip6[1], sk->dst_ip6[2], sk->dst_ip6[3] };
		__builtin_memcpy(tuple->local_addr, local, 16);
		__builtin_memcpy(tuple->remote_addr, remote, 16);
	}
	tuple->local_port = sk->src_port;
	tuple->remote_port = bpf_ntohs(sk->dst_port);
	tuple->family = sk->family;
	tuple->protocol = STRATA_IPPROTO_TCP;
	tuple->_pad = 0;
}

/*
 * The socket's sock_stats entry, keyed like the tracepoints' by the socket's address, which the
 * full socket pointer is. A socket not tracked yet (opened before the agent, or evicted) is
 * tracked from its first packet with a payload, without an open time or a role. Through bpf_sock
 * and its helpers only, so the packet programs need no kernel BTF.
 */
static __always_inline struct strata_sock_stats *packet_socket_stats(struct bpf_sock *sk)
{
	strata_sock_id id = (strata_sock_id)(unsigned long)sk;
	struct strata_sock_stats *stats = bpf_map_lookup_elem(&sock_stats, &id);
	if (stats)
		return stats;
	__u32 state = sk->state;
	if (state == STRATA_TCP_LISTEN || state == STRATA_TCP_CLOSE)
		return 0;
	struct strata_sock_stats *fresh = fresh_stats();
	if (!fresh)
		return 0;
	tuple_from_bpf_sock(&fresh->tuple, sk);
	fresh->cgroup_id = bpf_sk_cgroup_id(sk);
	fresh->last_seen_ns = bpf_ktime_get_ns();
	fresh->state = state;
	return insert_late(id, fresh);
}

/* A TCP segment with a payload: its socket is tracked, and an HTTP request or response on it is
 * recorded. */
static __always_inline void observe_tcp(struct __sk_buff *skb, const struct strata_packet *pkt,
					int egress)
{
	if (pkt->payload_len < STRATA_HTTP_MIN_PAYLOAD)
		return;
	_Static_assert(STRATA_HTTP_RESPONSE_CAPTURE == STRATA_HTTP_MIN_PAYLOAD,
		       "a response's capture is the head read to classify it");
	__u8 head[STRATA_HTTP_MIN_PAYLOAD];
	if (read_packet(skb, pkt->payload_off, head, sizeof(head))) {
		count(STRATA_COUNTER_PACKET_READ_FAILED);
		return;
	}
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != STRATA_IPPROTO_TCP)
		return;
	struct strata_sock_stats *stats = packet_socket_stats(sk);
	if (!stats)
		return;
	__u8 method = 0;
	int kind = classify_http(head, &method);
	if (kind == STRATA_HTTP_NEITHER)
		return;
	__u64 now = bpf_ktime_get_ns();
	if (kind == STRATA_HTTP_REQUEST)
		record_request(skb, sk, stats, pkt, egress, method, now);
	else
		record_response(skb, sk, stats, pkt, egress, head, now);
}

#endif /* STRATA_HTTP_H */
