// SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0)
/*
 * Strata's kernel programs, one object: TCP socket lifecycle from tracepoints, live socket counters
 * from a map iterator, and HTTP/1.x and DNS from cgroup_skb programs attached at the cgroup2 root. Built with CO-RE by
 * ingest-ebpf/build.rs; the event and map layouts are the contract in abi.h.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

#include "vmlinux_subset.h"
#include "abi.h"

/* Kernel constants the UAPI headers do not carry without pulling in libc's. */
#define STRATA_AF_INET 2
#define STRATA_AF_INET6 10
#define STRATA_IPPROTO_TCP 6
#define STRATA_IPPROTO_UDP 17
#define STRATA_RCV_SHUTDOWN 1
#define STRATA_EEXIST 17
/* include/net/tcp_states.h */
#define STRATA_TCP_ESTABLISHED 1
#define STRATA_TCP_SYN_SENT 2
#define STRATA_TCP_SYN_RECV 3
#define STRATA_TCP_CLOSE 7
#define STRATA_TCP_LISTEN 10

#include "maps.h"
#include "socket_lifecycle.h"
#include "packet.h"
#include "http.h"
#include "dns.h"

static __always_inline void observe_packet(struct __sk_buff *skb, int egress)
{
	struct strata_packet pkt = {};
	if (parse_packet(skb, &pkt))
		return;
	if (pkt.payload_len == 0)
		return;
	if (pkt.protocol == STRATA_IPPROTO_TCP)
		observe_tcp(skb, &pkt, egress);
	else
		observe_dns(skb, &pkt, egress);
}

/* Observers only: both always let the packet through. */
SEC("cgroup_skb/ingress")
int strata_cgroup_ingress(struct __sk_buff *skb)
{
	observe_packet(skb, 0);
	return 1;
}

SEC("cgroup_skb/egress")
int strata_cgroup_egress(struct __sk_buff *skb)
{
	observe_packet(skb, 1);
	return 1;
}

/* The kernel grants the helpers CO-RE reads need only to GPL-compatible programs; GPL-2.0 is one
 * of this file's two licenses. */
char LICENSE[] SEC("license") = "GPL";
