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

/* Shortest request line ("GET / HTTP/1.0\r\n") and longest prefix we look at. */
#define STRATA_HTTP_MIN_PAYLOAD 16

static __always_inline int starts_with(const __u8 *head, const char *prefix, int len)
{
	for (int i = 0; i < len; i++)
		if (head[i] != (__u8)prefix[i])
			return 0;
	return 1;
}

static __always_inline int is_http_request(const __u8 *head)
{
	return starts_with(head, "GET ", 4) || starts_with(head, "POST ", 5) ||
	       starts_with(head, "PUT ", 4) || starts_with(head, "HEAD ", 5) ||
	       starts_with(head, "DELETE ", 7) || starts_with(head, "PATCH ", 6) ||
	       starts_with(head, "OPTIONS ", 8) || starts_with(head, "CONNECT ", 8) ||
	       starts_with(head, "TRACE ", 6);
}

/* A final response: "HTTP/1.x NNN" with NNN not 1xx. Interim responses (100 Continue) come before
 * the real one on the same request and must not complete the exchange. */
static __always_inline int is_final_http_response(const __u8 *head)
{
	return starts_with(head, "HTTP/1.", 7) && head[8] == ' ' && head[9] != '1';
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

static __always_inline void complete_exchange(struct __sk_buff *skb, struct bpf_sock *sk,
					      const struct strata_packet *pkt, int egress)
{
	struct strata_http_pending *pending = bpf_sk_storage_get(&http_pending, sk, 0, 0);
	if (!pending || !pending->request_ns)
		return;
	/* a response travels against its request: out of a server, into a client */
	if ((pending->role == STRATA_ROLE_SERVER) != !!egress)
		return;
	union strata_scratch *slot = scratch_acquire();
	if (!slot)
		return;
	struct strata_http_exchange *event = &slot->http;
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

	__u32 response_len = pkt->payload_len;
	if (response_len > STRATA_HTTP_RESPONSE_CAPTURE)
		response_len = STRATA_HTTP_RESPONSE_CAPTURE;
	response_len = bound_len(response_len, STRATA_HTTP_RESPONSE_CAPTURE);
	if (response_len < STRATA_HTTP_MIN_PAYLOAD ||
	    bpf_skb_load_bytes(skb, pkt->payload_off, event->response, response_len)) {
		count(STRATA_COUNTER_PACKET_READ_FAILED);
		scratch_release();
		return;
	}
	event->response_len = response_len;

	__u32 request_len = bound_len(pending->request_len, STRATA_HTTP_REQUEST_CAPTURE);
	event->request_len = request_len;
	__builtin_memcpy(event->request, pending->request, STRATA_HTTP_REQUEST_CAPTURE);
	pending->request_ns = 0;

	emit(event, __builtin_offsetof(struct strata_http_exchange, request) + request_len,
	     STRATA_COUNTER_RINGBUF_LOST_HTTP);
	scratch_release();
}

static __always_inline void observe_http(struct __sk_buff *skb, const struct strata_packet *pkt,
					 int egress)
{
	if (pkt->protocol != STRATA_IPPROTO_TCP || pkt->payload_len < STRATA_HTTP_MIN_PAYLOAD)
		return;
	__u8 head[STRATA_HTTP_MIN_PAYLOAD];
	if (bpf_skb_load_bytes(skb, pkt->payload_off, head, sizeof(head))) {
		count(STRATA_COUNTER_PACKET_READ_FAILED);
		return;
	}
	int request = is_http_request(head);
	if (!request && !is_final_http_response(head))
		return;
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return;
	if (request)
		record_request(skb, sk, pkt, egress);
	else
		complete_exchange(skb, sk, pkt, egress);
}

#endif /* STRATA_HTTP_H */
