/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * DNS over UDP (port 53 on either end). A query is timestamped by (socket cookie, DNS id); its
 * response is matched, timed and handed to user space whole (up to the capture), where names,
 * types and answers are parsed. Seen from the resolver's socket and from the server's.
 */
#ifndef STRATA_DNS_H
#define STRATA_DNS_H

#define STRATA_DNS_PORT 53
#define STRATA_DNS_HEADER_LEN 12
#define STRATA_DNS_FLAG_RESPONSE 0x8000

static __always_inline void observe_dns(struct __sk_buff *skb, const struct strata_packet *pkt,
					int egress)
{
	if (pkt->protocol != STRATA_IPPROTO_UDP ||
	    (pkt->sport != STRATA_DNS_PORT && pkt->dport != STRATA_DNS_PORT) ||
	    pkt->payload_len < STRATA_DNS_HEADER_LEN)
		return;
	__u8 header[4];
	if (bpf_skb_load_bytes(skb, pkt->payload_off, header, sizeof(header))) {
		count(STRATA_COUNTER_PACKET_READ_FAILED);
		return;
	}
	__u16 dns_id = ((__u16)header[0] << 8) | header[1];
	__u16 flags = ((__u16)header[2] << 8) | header[3];
	struct strata_dns_key key = {};
	key.sock_cookie = bpf_get_socket_cookie(skb);
	key.dns_id = dns_id;
	__u64 now = bpf_ktime_get_ns();

	if (!(flags & STRATA_DNS_FLAG_RESPONSE)) {
		if (bpf_map_update_elem(&dns_pending, &key, &now, BPF_ANY))
			count(STRATA_COUNTER_DNS_PENDING_UPDATE_FAILED);
		return;
	}

	__u64 query_ns = 0;
	__u64 *pending = bpf_map_lookup_elem(&dns_pending, &key);
	if (pending) {
		query_ns = *pending;
		bpf_map_delete_elem(&dns_pending, &key);
	} else {
		count(STRATA_COUNTER_DNS_UNMATCHED);
	}

	union strata_scratch *slot = scratch_acquire();
	if (!slot)
		return;
	struct strata_dns_message *event = &slot->dns;
	__u32 len = pkt->payload_len;
	if (len > STRATA_DNS_CAPTURE)
		len = STRATA_DNS_CAPTURE;
	len = bound_len(len, STRATA_DNS_CAPTURE);
	if (len < STRATA_DNS_HEADER_LEN ||
	    bpf_skb_load_bytes(skb, pkt->payload_off, event->payload, len)) {
		count(STRATA_COUNTER_PACKET_READ_FAILED);
		scratch_release();
		return;
	}
	event->header.kind = STRATA_EVENT_DNS_MESSAGE;
	event->header._pad = 0;
	event->cgroup_id = bpf_skb_cgroup_id(skb);
	event->query_ns = query_ns;
	event->response_ns = now;
	tuple_from_packet(&event->tuple, pkt, egress);
	event->dns_id = dns_id;
	event->dns_flags = flags;
	event->payload_len = len;
	event->role = egress ? STRATA_ROLE_SERVER : STRATA_ROLE_CLIENT;
	event->_pad = 0;
	emit(event, __builtin_offsetof(struct strata_dns_message, payload) + len,
	     STRATA_COUNTER_RINGBUF_LOST_DNS);
	scratch_release();
}

#endif /* STRATA_DNS_H */
