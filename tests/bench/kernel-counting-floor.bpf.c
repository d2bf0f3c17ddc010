// SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0)
/*
 * A benchmark fixture, not part of the agent: the least a pair of packet programs can do to count
 * HTTP/1.x exchanges per socket in the kernel (a hash entry per socket, classify a GET request or
 * a response by its first word, stamp the request, bucket the response's latency), with nothing
 * else: no ring, no tracepoints, no user space. tests/bench/agent-max-ab.sh measures it as an arm
 * (`bpf:OBJ`) beside the agent; docs/benchmarks.md ("Run of 2026-11-28") has the figures.
 *
 *   clang-14 -target bpf -O2 -g -I/usr/include/x86_64-linux-gnu -Iingest-ebpf/bpf \
 *       -c tests/bench/kernel-counting-floor.bpf.c -o /tmp/floor.bpf.o
 *   tests/bench/agent-max-ab.sh base bpf:/tmp/floor.bpf.o agent:target/release/strata-agent
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "vmlinux_subset.h"
#include "abi.h"
#define STRATA_AF_INET 2
#define STRATA_AF_INET6 10
#define STRATA_IPPROTO_TCP 6
#define STRATA_IPPROTO_UDP 17
#include "maps.h"
#include "packet.h"

struct proto_slot { __u8 method; __u8 used; __u16 status; __u32 count; __u64 sum_ns; __u32 max_us; __u32 buckets[16]; };
struct proto_sock { __u64 request_ns; __u32 request_seq; __u8 method; __u8 role; __u16 pad;
  __u64 bytes_sent, bytes_received; __u32 segs_in, segs_out, srtt, min_rtt; __u64 last_seen;
  struct proto_slot slots[2]; };
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct proto_sock);
} sock_state SEC(".maps");

static const __u32 bounds_us[15] = {5000,10000,25000,50000,75000,100000,250000,500000,750000,1000000,2500000,5000000,7500000,10000000, 0xffffffff};

static __always_inline void observe(struct __sk_buff *skb, int egress)
{
	struct bpf_sock *bsk = skb->sk;
	if (!bsk) return;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(bsk);
	if (!tp) return;
	__u64 key = (__u64)tp;
	struct proto_sock *v = bpf_map_lookup_elem(&sock_state, &key);
	if (!v) {
		struct proto_sock fresh = {};
		bpf_map_update_elem(&sock_state, &key, &fresh, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&sock_state, &key);
		if (!v) return;
	}
#ifndef NO_REFRESH
	v->bytes_sent = tp->bytes_sent - tp->bytes_retrans;
	v->bytes_received = tp->bytes_received;
	v->segs_in = tp->segs_in;
	v->segs_out = tp->segs_out;
	v->srtt = tp->srtt_us >> 3;
#endif
	struct strata_packet pkt = {};
	if (parse_packet(skb, &pkt) || pkt.protocol != STRATA_IPPROTO_TCP || pkt.payload_len < 16)
		return;
	__u8 head[16];
	if (read_packet(skb, pkt.payload_off, head, sizeof(head)))
		return;
	if (head[0] == 'G' && head[1] == 'E' && head[2] == 'T' && head[3] == ' ') {
		v->request_ns = bpf_ktime_get_ns();
		v->method = 1;
		v->request_seq = pkt.tcp_seq;
		return;
	}
	if (head[0] == 'H' && head[1] == 'T' && head[2] == 'T' && head[3] == 'P') {
		if (!v->request_ns) return;
		__u64 lat = bpf_ktime_get_ns() - v->request_ns;
		__u32 lat_us = lat / 1000;
		__u16 status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
		struct proto_slot *s = &v->slots[0];
		if (s->used && (s->status != status || s->method != v->method)) {
			s = &v->slots[1];
			if (s->used && (s->status != status || s->method != v->method))
				return; /* would be an event */
		}
		s->used = 1; s->status = status; s->method = v->method;
		s->count++; s->sum_ns += lat; if (lat_us > s->max_us) s->max_us = lat_us;
		__u32 b = 0;
		for (b = 0; b < 15; b++)
			if (lat_us <= bounds_us[b]) break;
		if (b < 16) s->buckets[b]++;
		v->request_ns = 0;
	}
}

SEC("cgroup_skb/ingress")
int proto_ingress(struct __sk_buff *skb) { observe(skb, 0); return 1; }
SEC("cgroup_skb/egress")
int proto_egress(struct __sk_buff *skb) { observe(skb, 1); return 1; }
char LICENSE[] SEC("license") = "GPL";
