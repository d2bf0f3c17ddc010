/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * The kernel <-> user ABI: every ring-buffer event and every map key/value that user space reads.
 * Mirrored field by field in ingest-ebpf/src/abi.rs; both sides assert the same sizes and offsets,
 * so a change here that is not made there fails the build of one side or the other.
 *
 * Conventions:
 * - Addresses are 16 bytes; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d) so one key type covers
 *   both families and a dual-stack socket talking IPv4 compares equal to the packet it sends.
 * - Ports are in host byte order.
 * - Timestamps are CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns); user space converts once.
 * - Every ring-buffer record starts with struct strata_event_header.
 */
#ifndef STRATA_ABI_H
#define STRATA_ABI_H

#define STRATA_ABI_VERSION 3

/* Every field user space reads has its offset asserted here, and abi.rs checks the same list. */
#define STRATA_ABI_OFFSET(type, field, offset) \
	_Static_assert(__builtin_offsetof(struct type, field) == (offset), #type "." #field)

/* struct strata_event_header.kind */
#define STRATA_EVENT_CONN_CLOSED 1
#define STRATA_EVENT_HTTP_EXCHANGE 2
#define STRATA_EVENT_DNS_MESSAGE 3

/* Which end of the conversation the observed socket is. */
#define STRATA_ROLE_UNKNOWN 0
#define STRATA_ROLE_CLIENT 1
#define STRATA_ROLE_SERVER 2

/* Bytes of payload copied to user space. Powers of two: the verifier bounds lengths by masking. */
#define STRATA_HTTP_REQUEST_CAPTURE 512
#define STRATA_HTTP_RESPONSE_CAPTURE 16
#define STRATA_DNS_CAPTURE 512
/* Bytes of a request's first segment searched for a `traceparent` header (an `Authorization` or
 * `Cookie` line before it can take a kilobyte), and the bytes of its value copied on their own when
 * they lie past the request's capture. */
#define STRATA_HTTP_TRACEPARENT_SCAN 2048
#define STRATA_TRACEPARENT_CAPTURE 64

/* Request methods as the kernel classifies them (strata_http_slot.method); 0: none. */
#define STRATA_HTTP_METHOD_GET 1
#define STRATA_HTTP_METHOD_HEAD 2
#define STRATA_HTTP_METHOD_POST 3
#define STRATA_HTTP_METHOD_PUT 4
#define STRATA_HTTP_METHOD_DELETE 5
#define STRATA_HTTP_METHOD_CONNECT 6
#define STRATA_HTTP_METHOD_OPTIONS 7
#define STRATA_HTTP_METHOD_TRACE 8
#define STRATA_HTTP_METHOD_PATCH 9

/* HTTP exchanges counted in the kernel: (method, status, role) combinations per socket, and the
 * latency buckets of each: the 14 bounds of the http.*.request.duration histograms, and above. */
#define STRATA_HTTP_SLOTS 3
#define STRATA_HTTP_BUCKETS 15

/* Index into the per-CPU `counters` array: every loss or failure the kernel side can see. */
#define STRATA_COUNTER_RINGBUF_LOST_CONN 0     /* connection summary not written: ring buffer full */
#define STRATA_COUNTER_RINGBUF_LOST_HTTP 1     /* HTTP exchange not written: ring buffer full */
#define STRATA_COUNTER_RINGBUF_LOST_DNS 2      /* DNS message not written: ring buffer full */
#define STRATA_COUNTER_SOCK_STATS_UPDATE_FAILED 3 /* insert into sock_stats failed */
#define STRATA_COUNTER_SOCK_STATS_MISSING 4    /* close of a socket never tracked (opened before load, or evicted) */
#define STRATA_COUNTER_DNS_PENDING_UPDATE_FAILED 5 /* insert into dns_pending failed */
#define STRATA_COUNTER_DNS_UNMATCHED 6         /* DNS response whose query was not seen */
#define STRATA_COUNTER_HTTP_STORAGE_FAILED 7   /* no socket storage for a request */
#define STRATA_COUNTER_HTTP_UNANSWERED 8       /* request replaced by the next before a response came */
#define STRATA_COUNTER_KERNEL_READ_FAILED 9    /* a CO-RE read of kernel memory failed */
#define STRATA_COUNTER_PACKET_READ_FAILED 10   /* bpf_skb_load_bytes failed */
#define STRATA_COUNTER_SCRATCH_MISSING 11      /* no free per-CPU scratch slot (nesting deeper than expected) */
#define STRATA_COUNTER_HTTP_UNCOUNTED 12       /* HTTP exchange neither counted in a slot nor written to the ring */
#define STRATA_COUNTER_SLOTS 16

/* Key of `sock_stats`: the kernel address of the struct sock. An identity only while the socket
 * lives; the entry is deleted at TCP_CLOSE, before the memory can be reused. */
typedef __u64 strata_sock_id;

struct strata_flow_tuple {
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;
	__u16 remote_port;
	__u16 family; /* AF_INET / AF_INET6: of the socket in sock_stats, of the packet in L7 events */
	__u8 protocol; /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 _pad;
};
_Static_assert(sizeof(struct strata_flow_tuple) == 40, "strata_flow_tuple ABI");
STRATA_ABI_OFFSET(strata_flow_tuple, local_addr, 0);
STRATA_ABI_OFFSET(strata_flow_tuple, remote_addr, 16);
STRATA_ABI_OFFSET(strata_flow_tuple, local_port, 32);
STRATA_ABI_OFFSET(strata_flow_tuple, remote_port, 34);
STRATA_ABI_OFFSET(strata_flow_tuple, family, 36);
STRATA_ABI_OFFSET(strata_flow_tuple, protocol, 38);

/* HTTP exchanges of one (method, status, role) on one socket, counted in the kernel: totals since
 * the slot was first used, which user space turns into deltas like the byte counters. */
struct strata_http_slot {
	__u16 status;          /* response status code; 0: slot unused */
	__u8 method;           /* STRATA_HTTP_METHOD_* */
	__u8 role;             /* STRATA_ROLE_* of the socket in these exchanges */
	__u32 count;           /* exchanges, wrapping */
	__u64 latency_sum_ns;  /* request to response, wrapping */
	__u32 latency_max_us;  /* largest since `epoch` began */
	__u32 epoch;           /* http_epoch at the slot's latest exchange */
	__u32 buckets[STRATA_HTTP_BUCKETS]; /* exchanges per latency bucket, wrapping */
	__u32 _pad;
};
_Static_assert(sizeof(struct strata_http_slot) == 88, "strata_http_slot ABI");
STRATA_ABI_OFFSET(strata_http_slot, status, 0);
STRATA_ABI_OFFSET(strata_http_slot, method, 2);
STRATA_ABI_OFFSET(strata_http_slot, role, 3);
STRATA_ABI_OFFSET(strata_http_slot, count, 4);
STRATA_ABI_OFFSET(strata_http_slot, latency_sum_ns, 8);
STRATA_ABI_OFFSET(strata_http_slot, latency_max_us, 16);
STRATA_ABI_OFFSET(strata_http_slot, epoch, 20);
STRATA_ABI_OFFSET(strata_http_slot, buckets, 24);

/* Value of `sock_stats`: one live TCP socket, updated in place by the tracepoints. The byte and
 * segment counters are the socket's own (tcp_sock), as of the last state change or refresh (the
 * iterator user space runs before each read), and exact at the close; since the socket opened,
 * also for sockets first seen late.
 * The cgroup_skb programs keep the socket's HTTP here: the request waiting for its response, and
 * the exchanges counted per slot. A run of the refresh iterator writes every entry, refreshed, as
 * its key (strata_sock_id) followed by this value, back to back. */
struct strata_sock_stats {
	struct strata_flow_tuple tuple;
	__u64 cgroup_id;          /* cgroup v2 id of the socket's owner, from sk->sk_cgrp_data */
	__u64 opened_ns;          /* SYN_SENT or SYN_RECV seen; 0 when first seen mid-connection */
	__u64 established_ns;     /* 0 until ESTABLISHED */
	__u64 last_seen_ns;       /* any update; user space clears entries idle for long */
	__u64 bytes_sent;         /* payload bytes transmitted, retransmissions not counted again */
	__u64 bytes_received;     /* payload bytes taken in order by the stack, the FIN not counted */
	__u64 last_rtt_sample_ns; /* the latest RTT sample's time */
	__u32 segs_out;           /* tcp_sock.segs_out at the last update */
	__u32 segs_in;            /* tcp_sock.segs_in at the last update */
	__u32 retransmits;        /* tcp:tcp_retransmit_skb */
	__u32 srtt_us;            /* smoothed RTT, µs */
	__u32 min_rtt_us;         /* windowed minimum RTT, µs; 0 when unknown */
	__u32 rtt_samples;        /* RTT samples taken (one per refresh that found new segments
	                           * in), each adding to srtt_sum_us */
	__u8 role;                /* STRATA_ROLE_* */
	__u8 state;               /* last TCP state (include/net/tcp_states.h) */
	__u8 _pad[2];
	__u32 srtt_sum_us;        /* sum of the sampled smoothed RTTs, µs, wrapping: user space
	                           * divides differences by rtt_samples' for an interval's mean */
	__u64 http_request_ns;    /* the pending request's first segment; 0: none pending */
	__u32 http_request_seq;   /* its TCP sequence: a retransmission repeats it */
	__u8 http_method;         /* its STRATA_HTTP_METHOD_* */
	__u8 http_role;           /* CLIENT: it left this socket; SERVER: it arrived */
	__u8 http_capture;        /* STRATA_HTTP_CAPTURE_*: its head is in http_pending */
	__u8 http_slots_full;     /* every slot holds a combination: the request side reads this,
	                           * not the slots, which stay with the response side's CPU */
	struct strata_http_slot http[STRATA_HTTP_SLOTS];
};
_Static_assert(sizeof(struct strata_sock_stats) == 408, "strata_sock_stats ABI");
STRATA_ABI_OFFSET(strata_sock_stats, tuple, 0);
STRATA_ABI_OFFSET(strata_sock_stats, cgroup_id, 40);
STRATA_ABI_OFFSET(strata_sock_stats, opened_ns, 48);
STRATA_ABI_OFFSET(strata_sock_stats, established_ns, 56);
STRATA_ABI_OFFSET(strata_sock_stats, last_seen_ns, 64);
STRATA_ABI_OFFSET(strata_sock_stats, bytes_sent, 72);
STRATA_ABI_OFFSET(strata_sock_stats, bytes_received, 80);
STRATA_ABI_OFFSET(strata_sock_stats, last_rtt_sample_ns, 88);
STRATA_ABI_OFFSET(strata_sock_stats, segs_out, 96);
STRATA_ABI_OFFSET(strata_sock_stats, segs_in, 100);
STRATA_ABI_OFFSET(strata_sock_stats, retransmits, 104);
STRATA_ABI_OFFSET(strata_sock_stats, srtt_us, 108);
STRATA_ABI_OFFSET(strata_sock_stats, min_rtt_us, 112);
STRATA_ABI_OFFSET(strata_sock_stats, rtt_samples, 116);
STRATA_ABI_OFFSET(strata_sock_stats, role, 120);
STRATA_ABI_OFFSET(strata_sock_stats, state, 121);
STRATA_ABI_OFFSET(strata_sock_stats, srtt_sum_us, 124);
STRATA_ABI_OFFSET(strata_sock_stats, http_request_ns, 128);
STRATA_ABI_OFFSET(strata_sock_stats, http, 144);

/* strata_sock_stats.http_capture: why a pending request's head was captured, which sends its
 * exchange to the ring instead of a slot. */
#define STRATA_HTTP_CAPTURE_NONE 0
#define STRATA_HTTP_CAPTURE_TRACED 1     /* it carries a sampled traceparent: user space makes spans */
#define STRATA_HTTP_CAPTURE_SLOTS_FULL 2 /* every slot is taken: it goes to a slot if one matches */

struct strata_event_header {
	__u32 kind; /* STRATA_EVENT_* */
	__u32 _pad;
};
_Static_assert(sizeof(struct strata_event_header) == 8, "strata_event_header ABI");
STRATA_ABI_OFFSET(strata_event_header, kind, 0);

/* Written when a tracked socket reaches TCP_CLOSE. Classification (refused, timed out, reset, …)
 * is done in user space from old_state, sk_err and established_ns, where it can be unit-tested. */
struct strata_conn_closed {
	struct strata_event_header header;
	strata_sock_id sock_id;
	__u64 closed_ns;
	struct strata_sock_stats stats;
	__s32 sk_err;    /* sk->sk_err at the transition: ECONNREFUSED, ETIMEDOUT, ECONNRESET, … */
	__u8 old_state;  /* state before TCP_CLOSE; SYN_SENT means the connect failed */
	__u8 _pad[3];
};
_Static_assert(sizeof(struct strata_conn_closed) == 440, "strata_conn_closed ABI");
STRATA_ABI_OFFSET(strata_conn_closed, header, 0);
STRATA_ABI_OFFSET(strata_conn_closed, sock_id, 8);
STRATA_ABI_OFFSET(strata_conn_closed, closed_ns, 16);
STRATA_ABI_OFFSET(strata_conn_closed, stats, 24);
STRATA_ABI_OFFSET(strata_conn_closed, sk_err, 432);
STRATA_ABI_OFFSET(strata_conn_closed, old_state, 436);

/* One HTTP/1.x request and its response on one socket, seen from that socket's side. The record
 * is written with only request_len bytes of `request`, so its length on the ring varies. */
struct strata_http_exchange {
	struct strata_event_header header;
	__u64 cgroup_id;
	__u64 sock_cookie;
	__u64 request_ns;  /* client: request left; server: request arrived */
	__u64 response_ns; /* client: response arrived; server: response left */
	struct strata_flow_tuple tuple;
	__u8 role;         /* STRATA_ROLE_CLIENT or STRATA_ROLE_SERVER */
	__u8 _pad;
	__u16 request_len;  /* bytes valid in request[] */
	__u16 response_len; /* bytes valid in response[] */
	__u16 _pad2;
	__u32 request_payload_len; /* payload bytes of the request's first segment (may exceed capture) */
	__u8 traceparent_len;      /* bytes valid in traceparent[]; 0 when the value lies in request[] */
	__u8 _pad3[3];
	__u8 traceparent[STRATA_TRACEPARENT_CAPTURE]; /* the traceparent's value, when past request[] */
	__u8 response[STRATA_HTTP_RESPONSE_CAPTURE];  /* start of the status line: version and code */
	__u8 request[STRATA_HTTP_REQUEST_CAPTURE];    /* request line and headers */
};
_Static_assert(sizeof(struct strata_http_exchange) == 688, "strata_http_exchange ABI");
STRATA_ABI_OFFSET(strata_http_exchange, header, 0);
STRATA_ABI_OFFSET(strata_http_exchange, cgroup_id, 8);
STRATA_ABI_OFFSET(strata_http_exchange, sock_cookie, 16);
STRATA_ABI_OFFSET(strata_http_exchange, request_ns, 24);
STRATA_ABI_OFFSET(strata_http_exchange, response_ns, 32);
STRATA_ABI_OFFSET(strata_http_exchange, tuple, 40);
STRATA_ABI_OFFSET(strata_http_exchange, role, 80);
STRATA_ABI_OFFSET(strata_http_exchange, request_len, 82);
STRATA_ABI_OFFSET(strata_http_exchange, response_len, 84);
STRATA_ABI_OFFSET(strata_http_exchange, request_payload_len, 88);
STRATA_ABI_OFFSET(strata_http_exchange, traceparent_len, 92);
STRATA_ABI_OFFSET(strata_http_exchange, traceparent, 96);
STRATA_ABI_OFFSET(strata_http_exchange, response, 160);
STRATA_ABI_OFFSET(strata_http_exchange, request, 176);

/* Socket-local storage (`http_pending`): the request waiting for its response. Kernel-only, but
 * mirrored so its size is part of the contract. */
struct strata_http_pending {
	__u64 request_ns;
	__u32 request_seq; /* TCP sequence of the request's first byte: a retransmission repeats it */
	__u32 request_payload_len;
	__u16 request_len;
	__u8 role;
	__u8 traceparent_len;
	__u8 _pad[4];
	__u8 traceparent[STRATA_TRACEPARENT_CAPTURE];
	__u8 request[STRATA_HTTP_REQUEST_CAPTURE];
};
_Static_assert(sizeof(struct strata_http_pending) == 600, "strata_http_pending ABI");
STRATA_ABI_OFFSET(strata_http_pending, request_ns, 0);
STRATA_ABI_OFFSET(strata_http_pending, request_seq, 8);
STRATA_ABI_OFFSET(strata_http_pending, request_payload_len, 12);
STRATA_ABI_OFFSET(strata_http_pending, request_len, 16);
STRATA_ABI_OFFSET(strata_http_pending, role, 18);
STRATA_ABI_OFFSET(strata_http_pending, traceparent_len, 19);
STRATA_ABI_OFFSET(strata_http_pending, traceparent, 24);
STRATA_ABI_OFFSET(strata_http_pending, request, 88);

/* A DNS response over UDP, with the whole message (up to the capture) for user space to parse. */
struct strata_dns_message {
	struct strata_event_header header;
	__u64 cgroup_id;
	__u64 query_ns;    /* 0 when the query was not seen */
	__u64 response_ns;
	struct strata_flow_tuple tuple;
	__u16 dns_id;
	__u16 dns_flags;
	__u16 payload_len; /* bytes valid in payload[] */
	__u8 role;         /* CLIENT: the response arrived; SERVER: the response left */
	__u8 _pad;
	__u8 payload[STRATA_DNS_CAPTURE];
};
_Static_assert(sizeof(struct strata_dns_message) == 592, "strata_dns_message ABI");
STRATA_ABI_OFFSET(strata_dns_message, header, 0);
STRATA_ABI_OFFSET(strata_dns_message, cgroup_id, 8);
STRATA_ABI_OFFSET(strata_dns_message, query_ns, 16);
STRATA_ABI_OFFSET(strata_dns_message, response_ns, 24);
STRATA_ABI_OFFSET(strata_dns_message, tuple, 32);
STRATA_ABI_OFFSET(strata_dns_message, dns_id, 72);
STRATA_ABI_OFFSET(strata_dns_message, dns_flags, 74);
STRATA_ABI_OFFSET(strata_dns_message, payload_len, 76);
STRATA_ABI_OFFSET(strata_dns_message, role, 78);
STRATA_ABI_OFFSET(strata_dns_message, payload, 80);

/* Key of `dns_pending`: a query in flight on one socket. */
struct strata_dns_key {
	__u64 sock_cookie;
	__u16 dns_id;
	__u8 _pad[6];
};
_Static_assert(sizeof(struct strata_dns_key) == 16, "strata_dns_key ABI");
STRATA_ABI_OFFSET(strata_dns_key, sock_cookie, 0);
STRATA_ABI_OFFSET(strata_dns_key, dns_id, 8);

#endif /* STRATA_ABI_H */
