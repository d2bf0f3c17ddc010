/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * Just enough IPv4/IPv6 and TCP/UDP header parsing to find ports and payload in a cgroup_skb
 * program, where data starts at the network header. Packets we cannot place (IPv6 extension
 * headers, non-first fragments) are left alone.
 */
#ifndef STRATA_PACKET_H
#define STRATA_PACKET_H

/* Shortest HTTP request line ("GET / HTTP/1.0\r\n"), and the prefix looked at to classify one. */
#define STRATA_HTTP_MIN_PAYLOAD 16

struct strata_ipv4_header {
	__u8 version_ihl;
	__u8 tos;
	__be16 total_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u8 saddr[4];
	__u8 daddr[4];
};

struct strata_ipv6_header {
	__be32 version_class_flow;
	__be16 payload_len;
	__u8 next_header;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct strata_tcp_header {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 data_offset; /* upper nibble: header length in 32-bit words */
	__u8 flags;
	__be16 window;
	__u16 check;
	__be16 urg_ptr;
};

struct strata_udp_header {
	__be16 source;
	__be16 dest;
	__be16 len;
	__u16 check;
};

struct strata_packet {
	__u8 saddr[16]; /* IPv4-mapped for IPv4 */
	__u8 daddr[16];
	__u32 payload_off;
	__u32 payload_len;
	__u32 tcp_seq;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 protocol;
};

/*
 * Copies `len` bytes at `off` from the packet: straight from the linear head when they lie in it,
 * where the IP and TCP/UDP headers are on both paths, else through the helper (payload in page
 * fragments). The direct read spares a helper call and its copy per header, on every packet.
 */
static __always_inline int read_packet(struct __sk_buff *skb, __u32 off, void *dst, __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	/* off is at most 60 + 60 (IPv4 and TCP header lengths): a bound the verifier can follow */
	if (off <= 128 && data + off + len <= data_end) {
		__builtin_memcpy(dst, data + off, len);
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, dst, len);
}

static __always_inline int parse_packet(struct __sk_buff *skb, struct strata_packet *pkt)
{
	/* The IPv4 header's length covers the version of either; IPv6 reads its own header again. */
	struct strata_ipv4_header ip;
	__u32 l4_off;
	if (read_packet(skb, 0, &ip, sizeof(ip)))
		return -1;
	__u8 version = ip.version_ihl >> 4;
	if (version == 4) {
		l4_off = (ip.version_ihl & 0xf) * 4;
		if (l4_off < sizeof(ip) || (ip.frag_off & bpf_htons(0x1fff)))
			return -1;
		__builtin_memset(pkt->saddr, 0, 10);
		__builtin_memset(pkt->daddr, 0, 10);
		pkt->saddr[10] = pkt->saddr[11] = pkt->daddr[10] = pkt->daddr[11] = 0xff;
		__builtin_memcpy(&pkt->saddr[12], ip.saddr, 4);
		__builtin_memcpy(&pkt->daddr[12], ip.daddr, 4);
		pkt->protocol = ip.protocol;
		pkt->family = STRATA_AF_INET;
	} else if (version == 6) {
		struct strata_ipv6_header ip6;
		if (read_packet(skb, 0, &ip6, sizeof(ip6)))
			return -1;
		__builtin_memcpy(pkt->saddr, ip6.saddr, 16);
		__builtin_memcpy(pkt->daddr, ip6.daddr, 16);
		pkt->protocol = ip6.next_header;
		pkt->family = STRATA_AF_INET6;
		l4_off = sizeof(ip6);
	} else {
		return -1;
	}

	if (pkt->protocol == STRATA_IPPROTO_TCP) {
		/* Only a payload interests us (HTTP, at least STRATA_HTTP_MIN_PAYLOAD bytes): a segment
		 * too short to carry one after the smallest TCP header, most of them ACKs, stops here. */
		if (skb->len < l4_off + sizeof(struct strata_tcp_header) + STRATA_HTTP_MIN_PAYLOAD)
			return -1;
		struct strata_tcp_header tcp;
		if (read_packet(skb, l4_off, &tcp, sizeof(tcp)))
			return -1;
		pkt->sport = bpf_ntohs(tcp.source);
		pkt->dport = bpf_ntohs(tcp.dest);
		pkt->tcp_seq = bpf_ntohl(tcp.seq);
		pkt->payload_off = l4_off + (tcp.data_offset >> 4) * 4;
	} else if (pkt->protocol == STRATA_IPPROTO_UDP) {
		struct strata_udp_header udp;
		if (read_packet(skb, l4_off, &udp, sizeof(udp)))
			return -1;
		pkt->sport = bpf_ntohs(udp.source);
		pkt->dport = bpf_ntohs(udp.dest);
		pkt->tcp_seq = 0;
		pkt->payload_off = l4_off + sizeof(udp);
	} else {
		return -1;
	}
	/* skb->len, not the IP length: GSO packets on egress carry many segments in one skb */
	pkt->payload_len = skb->len > pkt->payload_off ? skb->len - pkt->payload_off : 0;
	return 0;
}

/* Orient a packet to the socket that sends (egress) or receives (ingress) it. */
static __always_inline void tuple_from_packet(struct strata_flow_tuple *tuple,
					      const struct strata_packet *pkt, int egress)
{
	if (egress) {
		__builtin_memcpy(tuple->local_addr, pkt->saddr, 16);
		__builtin_memcpy(tuple->remote_addr, pkt->daddr, 16);
		tuple->local_port = pkt->sport;
		tuple->remote_port = pkt->dport;
	} else {
		__builtin_memcpy(tuple->local_addr, pkt->daddr, 16);
		__builtin_memcpy(tuple->remote_addr, pkt->saddr, 16);
		tuple->local_port = pkt->dport;
		tuple->remote_port = pkt->sport;
	}
	tuple->family = pkt->family;
	tuple->protocol = pkt->protocol;
	tuple->_pad = 0;
}

#endif /* STRATA_PACKET_H */
