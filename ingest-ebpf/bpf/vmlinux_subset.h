/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * The few kernel types the programs read, with only the fields they touch. Each is marked
 * preserve_access_index, so clang records CO-RE relocations by field name and the loader rewrites
 * offsets against the running kernel's BTF (/sys/kernel/btf/vmlinux). Field order and padding here
 * are therefore irrelevant; names and types must match the kernel's.
 *
 * Tracepoint contexts are the kernel's `trace_event_raw_<event>` records. Their array fields are
 * copied with bpf_core_read, never memcpy: a memcpy of a relocated array is not relocated.
 */
#ifndef STRATA_VMLINUX_SUBSET_H
#define STRATA_VMLINUX_SUBSET_H

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
};

struct trace_event_raw_inet_sock_set_state {
	struct trace_entry ent;
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 protocol;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
};

struct trace_event_raw_tcp_retransmit_skb {
	struct trace_entry ent;
	const void *skbaddr;
	const void *skaddr;
};

struct kernfs_node {
	__u64 id; /* the cgroup id bpf_skb_cgroup_id() reports */
};

struct cgroup {
	struct kernfs_node *kn;
};

struct sock_cgroup_data {
	struct cgroup *cgroup;
};

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
};

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

struct sock {
	struct sock_common __sk_common;
	int sk_err;
	__u8 sk_shutdown; /* RCV_SHUTDOWN (1) once the peer's FIN arrived */
	__u16 sk_protocol;
	struct sock_cgroup_data sk_cgrp_data;
};

struct sk_buff;

struct minmax_sample {
	__u32 t;
	__u32 v;
};

struct minmax {
	struct minmax_sample s[3];
};

struct tcp_sock {
	__u32 segs_in;
	__u32 segs_out;
	__u64 bytes_sent;    /* RFC 4898 tcpEStatsPerfHCDataOctetsOut: payload, retransmits included */
	__u64 bytes_retrans; /* RFC 4898 tcpEStatsPerfOctetsRetrans */
	__u32 srtt_us; /* smoothed RTT << 3, in µs */
	struct minmax rtt_min;
	__u64 bytes_received; /* RFC 4898 tcpEStatsAppHCThruOctetsReceived; a FIN counts one */
};

#pragma clang attribute pop

/* The context of a map element iterator (iter/bpf_map_elem): the kernel passes its arguments as
 * 64-bit slots in this order, a fixed ABI, so no relocation. meta->seq is the run's output; key
 * and value are the element's, the value writable in place; both NULL once at the end. */
struct strata_iter_meta {
	void *seq; /* struct seq_file *, first in struct bpf_iter_meta */
};

struct strata_iter_map_elem {
	struct strata_iter_meta *meta;
	void *map;
	void *key;
	void *value;
};

#endif /* STRATA_VMLINUX_SUBSET_H */
