/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * HTTP/1.x on TCP, per socket: the first segment of a request is captured and timestamped in
 * socket storage; the first segment of the response that travels the other way completes it and
 * the pair goes to user space, which parses method, path, headers and status. Seen on the client
 * socket (request egress, response ingress) and on the server socket (the reverse), so latency is
 * measured on both ends. Pipelined requests keep only the latest (counted).
 */
#ifndef STRATA_HTTP_H
#define STRATA_HTTP_H

/* An exchange record's length before the request capture, which it carries only as captured. */
#define STRATA_HTTP_EXCHANGE_FIXED_LEN __builtin_offsetof(struct strata_http_exchange, request)

#define STRATA_HTTP_NEITHER 0
#define STRATA_HTTP_REQUEST 1
#define STRATA_HTTP_RESPONSE 2

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

/* What a payload starts with: a request line (the nine methods of RFC 9110 and PATCH), a final
 * response ("HTTP/1.x NNN" with NNN not 1xx: interim responses such as 100 Continue come before
 * the real one on the same request and must not complete the exchange), or neither. Most
 * payloads are told apart by their first word alone. */
static __always_inline int classify_http(const __u8 *head)
{
	switch (STRATA_WORD(head[0], head[1], head[2], head[3])) {
	case STRATA_WORD('G', 'E', 'T', ' '):
	case STRATA_WORD('P', 'U', 'T', ' '):
		return STRATA_HTTP_REQUEST;
	case STRATA_WORD('P', 'O', 'S', 'T'):
	case STRATA_WORD('H', 'E', 'A', 'D'):
		return head[4] == ' ' ? STRATA_HTTP_REQUEST : STRATA_HTTP_NEITHER;
	case STRATA_WORD('D', 'E', 'L', 'E'):
		return starts_with(head + 4, "TE ", 3) ? STRATA_HTTP_REQUEST : STRATA_HTTP_NEITHER;
	case STRATA_WORD('P', 'A', 'T', 'C'):
		return starts_with(head + 4, "H ", 2) ? STRATA_HTTP_REQUEST : STRATA_HTTP_NEITHER;
	case STRATA_WORD('O', 'P', 'T', 'I'):
		return starts_with(head + 4, "ONS ", 4) ? STRATA_HTTP_REQUEST : STRATA_HTTP_NEITHER;
	case STRATA_WORD('C', 'O', 'N', 'N'):
		return starts_with(head + 4, "ECT ", 4) ? STRATA_HTTP_REQUEST : STRATA_HTTP_NEITHER;
	case STRATA_WORD('T', 'R', 'A', 'C'):
		return starts_with(head + 4, "E ", 2) ? STRATA_HTTP_REQUEST : STRATA_HTTP_NEITHER;
	case STRATA_WORD('H', 'T', 'T', 'P'):
		return starts_with(head + 4, "/1.", 3) && head[8] == ' ' && head[9] != '1'
			       ? STRATA_HTTP_RESPONSE
			       : STRATA_HTTP_NEITHER;
	default:
		return STRATA_HTTP_NEITHER;
	}
}

static __always_inline void record_request(struct __sk_buff *skb, struct bpf_sock *sk,
					   const struct strata_packet *pkt, int egress)
{
	struct strata_http_pending *pending =
		bpf_sk_storage_get(&http_pending, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!pending) {
		count(STRATA_COUNTER_HTTP_STORAGE_FAILED);
		return;
	}
	if (pending->request_ns) {
		if (pending->request_seq == pkt->tcp_seq)
			return; /* a retransmission: keep the first timestamp */
		count(STRATA_COUNTER_HTTP_UNANSWERED);
	}
	__u32 len = pkt->payload_len;
	if (len > STRATA_HTTP_REQUEST_CAPTURE)
		len = STRATA_HTTP_REQUEST_CAPTURE;
	if (len < STRATA_HTTP_MIN_PAYLOAD)
		return;
	len = bound_len(len, STRATA_HTTP_REQUEST_CAPTURE);
	if (bpf_skb_load_bytes(skb, pkt->payload_off, pending->request, len)) {
		count(STRATA_COUNTER_PACKET_READ_FAILED);
		pending->request_ns = 0;
		return;
	}
	pending->request_ns = bpf_ktime_get_ns();
	pending->request_seq = pkt->tcp_seq;
	pending->request_payload_len = pkt->payload_len;
	pending->request_len = len;
	pending->role = egress ? STRATA_ROLE_CLIENT : STRATA_ROLE_SERVER;
}

/* `head`: the response's first STRATA_HTTP_RESPONSE_CAPTURE bytes, already read to classify it;
 * they hold the status line's version and code, all user space reads of a response. */
static __always_inline void complete_exchange(struct __sk_buff *skb, struct bpf_sock *sk,
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
	event->_pad3 = 0;
	event->request_payload_len = pending->request_payload_len;
	event->response_len = STRATA_HTTP_RESPONSE_CAPTURE;
	event->request_len = request_len;
	pending->request_ns = 0;
	bpf_ringbuf_submit_dynptr(&record, flags);
}

static __always_inline void observe_http(struct __sk_buff *skb, const struct strata_packet *pkt,
					 int egress)
{
	if (pkt->protocol != STRATA_IPPROTO_TCP || pkt->payload_len < STRATA_HTTP_MIN_PAYLOAD)
		return;
	_Static_assert(STRATA_HTTP_RESPONSE_CAPTURE == STRATA_HTTP_MIN_PAYLOAD,
		       "a response's capture is the head read to classify it");
	__u8 head[STRATA_HTTP_MIN_PAYLOAD];
	if (read_packet(skb, pkt->payload_off, head, sizeof(head))) {
		count(STRATA_COUNTER_PACKET_READ_FAILED);
		return;
	}
	int kind = classify_http(head);
	if (kind == STRATA_HTTP_NEITHER)
		return;
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return;
	if (kind == STRATA_HTTP_REQUEST)
		record_request(skb, sk, pkt, egress);
	else
		complete_exchange(skb, sk, pkt, egress, head);
}

#endif /* STRATA_HTTP_H */
