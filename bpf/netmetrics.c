/* netmetrics: count frames per traffic class: ingress by XDP (native mode) or a TC classifier
 * (skb mode), egress by a TC classifier. One compilation serves every interface it is attached to:
 * counters are kept by the frame's interface (ifindex).
 *
 * The loader (bpf/program.py) defines CLASS_<NAME>, the bit of each class of bpf/classes.py,
 * NUM_CLASSES, and TCP_FLAG_CLASSES, the mask of bpf/classes.py's TCP_FLAG_CLASSES (counted once
 * per frame or aggregate, see count_frame). The three entry points run the same parser, which
 * returns a bitmask of classes, then add the frame to its interface's per-CPU counters (rx or
 * tx): no locks, no allocation. The loader gives an interface a slot of counters before it
 * attaches there and takes it back after it detached (MAX_INTERFACES slots): a frame of an
 * interface without one is not counted.
 * With FLOWS defined (FLOW_TABLE_SIZE entries), they also add it to its flow's entry of an LRU
 * hash, which the sampler empties every interval (bpf/flow_table.py).
 * The programs only read: they never modify, drop or redirect a frame.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/in6.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>

#if NUM_CLASSES > 32
#error "the class mask is 32 bits wide"
#endif

#define CLASS_BIT(class) (1U << (class))
#define TRANSPORT_CLASSES (CLASS_BIT(CLASS_TCP) | CLASS_BIT(CLASS_UDP) | CLASS_BIT(CLASS_ICMP))
#define IP_CLASSES (CLASS_BIT(CLASS_IPV4) | CLASS_BIT(CLASS_IPV6))
#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT_HEADERS 4
#define IPV4_FRAG_OFFSET 0x1FFF
#define IPV6_FRAG_OFFSET 0xFFF8
#define UDP_PORTS_BASE 65536
#define RX 0
#define TX 1

struct vlan_tag {
    __be16 tci;
    __be16 proto;
};

/* Hop-by-hop, routing and destination options share this start; length in 8-byte units. */
struct ipv6_ext {
    __u8 nexthdr;
    __u8 hdrlen;
};

struct ipv6_frag {
    __u8 nexthdr;
    __u8 reserved;
    __be16 frag_off;
    __be32 id;
};

/* A flow as this host sees it on one interface: local is the monitored side (the destination of
 * what comes in, the source of what goes out), so both directions of a conversation meet in one
 * entry. IPv4 addresses are IPv4-mapped IPv6 (::ffff:a.b.c.d). Ports are in network order, 0 for
 * protocols without ports and for frames whose transport header is not there (non-first
 * fragments). */
struct flow_key {
    __u32 local[4];
    __u32 remote[4];
    __be16 local_port;
    __be16 remote_port;
    __u8 proto;
    __u8 pad[3];  /* explicit, so that `= {}` zeroes all 44 bytes the hash reads */
    __u32 ifindex;
};

/* Where the parser puts a frame's source and destination in its flow key, by direction (a
 * constant in each entry point, so each program keeps one branch): the local side is the source
 * of what is sent (TX) and the destination of what comes in (RX). */
#define FLOW_SRC(flow, direction) ((direction) == TX ? (flow)->local : (flow)->remote)
#define FLOW_DST(flow, direction) ((direction) == TX ? (flow)->remote : (flow)->local)
#define FLOW_SRC_PORT(flow, direction) \
    ((direction) == TX ? &(flow)->local_port : &(flow)->remote_port)
#define FLOW_DST_PORT(flow, direction) \
    ((direction) == TX ? &(flow)->remote_port : &(flow)->local_port)

struct class_counters {
    __u64 packets[NUM_CLASSES];
    __u64 bytes[NUM_CLASSES];
};

struct iface_counters {
    struct class_counters direction[2];  /* by RX, TX */
};

/* An interface's counters are in its slot of a per-CPU array (no two CPUs write one cache line),
 * and slots[ifindex] is that slot + 1, or 0 for an interface not counted: two array lookups,
 * cheaper than one hash lookup by ifindex. Ifindexes from MAX_IFINDEX on are not counted. */
BPF_ARRAY(slots, __u32, MAX_IFINDEX);
BPF_PERCPU_ARRAY(counters, struct iface_counters, MAX_INTERFACES);
/* Application classes by port, filled by the loader: index port for TCP, UDP_PORTS_BASE + port
 * for UDP; value the mask of the classes that port stands for. An array: the cheapest lookup. */
BPF_ARRAY(app_ports, __u32, 2 * 65536);

#ifdef FLOWS
struct flow_counts {
    __u64 packets[2];  /* by RX, TX */
    __u64 bytes[2];
};

/* LRU: when the table is full, a new flow evicts the least recently used one, and the totals
 * above never depend on it. Per-CPU values: each CPU adds to its own copy of a flow's counts,
 * without atomics or a cache line shared by the CPUs that receive and send it; the sampler sums
 * them. flows_created counts the entries made by ifindex (the loader makes and deletes its entries
 * with the counters'), so that the sampler can tell the evicted ones (made, never harvested) apart.
 * Looked up only when a flow's first frame makes its entry. */
BPF_TABLE("lru_percpu_hash", struct flow_key, struct flow_counts, flows, FLOW_TABLE_SIZE);
BPF_TABLE("percpu_hash", __u32, __u64, flows_created, MAX_INTERFACES);
#endif

static __always_inline struct iface_counters *counters_of(__u32 ifindex)
{
    __u32 *slot = slots.lookup(&ifindex);
    if (!slot || !*slot)
        return NULL;
    __u32 index = *slot - 1;
    return counters.lookup(&index);
}

static __always_inline __u32 port_classes(__u32 index)
{
    __u32 *mask = app_ports.lookup(&index);
    return mask ? *mask : 0;
}

/* Connection events: a SYN opens, its SYN-ACK accepts, a RST aborts, a FIN closes. */
static __always_inline __u32 tcp_flag_classes(struct tcphdr *tcp)
{
    __u32 mask = 0;

    if (tcp->syn)
        mask |= tcp->ack ? CLASS_BIT(CLASS_SYNACK) : CLASS_BIT(CLASS_SYN);
    if (tcp->rst)
        mask |= CLASS_BIT(CLASS_RST);
    if (tcp->fin)
        mask |= CLASS_BIT(CLASS_FIN);
    return mask;
}

/* The class of the transport protocol, known from the IP header alone; application classes too
 * when the transport header is there (not a non-first fragment) and its ports are in bounds.
 * *header_len becomes the frame's L2-L4 header length (TCP options included) when the whole
 * TCP or UDP header is in bounds; it stays 0 otherwise. */
static __always_inline __u32 transport(void *data, void *l4, void *data_end, __u8 proto,
                                       __u8 icmp_proto, int has_l4, __u32 *header_len,
                                       struct flow_key *flow, __u32 direction)
{
    __u32 mask, base;

    flow->proto = proto;
    if (proto == IPPROTO_TCP) {
        mask = CLASS_BIT(CLASS_TCP);
        base = 0;
    } else if (proto == IPPROTO_UDP) {
        mask = CLASS_BIT(CLASS_UDP);
        base = UDP_PORTS_BASE;
    } else if (proto == icmp_proto) {
        return CLASS_BIT(CLASS_ICMP);
    } else {
        return 0;
    }
    if (!has_l4)
        return mask;
    __u32 l4_len = sizeof(struct udphdr);
    if (proto == IPPROTO_TCP) {
        struct tcphdr *tcp = l4;
        l4_len = 0;
        if ((void *)(tcp + 1) <= data_end) {
            l4_len = tcp->doff >= 5 ? tcp->doff * 4 : 0;
            mask |= tcp_flag_classes(tcp);
        }
    }
    if (l4_len && l4 + l4_len <= data_end)
        *header_len = l4 + l4_len - data;
    __be16 *ports = l4;
    if ((void *)(ports + 2) > data_end)
        return mask;
    *FLOW_SRC_PORT(flow, direction) = ports[0];
    *FLOW_DST_PORT(flow, direction) = ports[1];
    mask |= port_classes(base + bpf_ntohs(ports[0]));
    return mask | port_classes(base + bpf_ntohs(ports[1]));
}

static __always_inline __u32 parse_ipv4(void *data, void *l3, void *data_end, __u32 *header_len,
                                        struct flow_key *flow, __u32 direction)
{
    struct iphdr *ip = l3;

    if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
        return 0;
    flow->local[2] = flow->remote[2] = bpf_htonl(0xffff);
    FLOW_SRC(flow, direction)[3] = ip->saddr;
    FLOW_DST(flow, direction)[3] = ip->daddr;
    __u32 ip_len = ip->ihl * 4;
    if (l3 + ip_len > data_end)  /* options cut short */
        return 0;
    /* A non-first fragment has no transport header: its protocol is known, its ports not. */
    int has_l4 = !(ip->frag_off & bpf_htons(IPV4_FRAG_OFFSET));
    __u32 above = transport(data, l3 + ip_len, data_end, ip->protocol, IPPROTO_ICMP, has_l4,
                            header_len, flow, direction);
    return CLASS_BIT(CLASS_IPV4) | above;
}

static __always_inline __u32 parse_ipv6(void *data, void *l3, void *data_end, __u32 *header_len,
                                        struct flow_key *flow, __u32 direction)
{
    struct ipv6hdr *ip6 = l3;

    if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
        return 0;
    __builtin_memcpy(FLOW_SRC(flow, direction), &ip6->saddr, sizeof(flow->local));
    __builtin_memcpy(FLOW_DST(flow, direction), &ip6->daddr, sizeof(flow->remote));
    void *cur = ip6 + 1;
    __u8 next = ip6->nexthdr;
    int has_l4 = 1;

    /* A chain longer than MAX_IPV6_EXT_HEADERS, or cut short, leaves an unknown transport. */
#pragma unroll
    for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
        if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS) {
            struct ipv6_ext *ext = cur;
            if ((void *)(ext + 1) > data_end)
                return CLASS_BIT(CLASS_IPV6);
            next = ext->nexthdr;
            cur += (ext->hdrlen + 1) * 8;
        } else if (next == IPPROTO_FRAGMENT) {
            struct ipv6_frag *frag = cur;
            if ((void *)(frag + 1) > data_end)
                return CLASS_BIT(CLASS_IPV6);
            next = frag->nexthdr;
            cur = frag + 1;
            if (frag->frag_off & bpf_htons(IPV6_FRAG_OFFSET)) {
                has_l4 = 0;
                break;
            }
        } else {
            break;
        }
    }
    return CLASS_BIT(CLASS_IPV6) |
           transport(data, cur, data_end, next, IPPROTO_ICMPV6, has_l4, header_len, flow,
                     direction);
}

/* The classes of one frame. A class is set only once the header proving it is in bounds.
 * *header_len: the L2-L4 header length of a TCP or UDP frame whose whole header is in bounds,
 * else 0 (the length a GSO aggregate repeats in each of its segments). *flow (zeroed by the
 * caller, who sets its ifindex): an IP frame's addresses, protocol and ports, the local side
 * being the source of what is sent (direction TX) and the destination of what comes in (RX). */
static __always_inline __u32 classify(void *data, void *data_end, __u32 *header_len,
                                      struct flow_key *flow, __u32 direction)
{
    struct ethhdr *eth = data;
    __u32 mask = 0;

    *header_len = 0;
    if ((void *)(eth + 1) <= data_end) {
        void *cur = eth + 1;
        __be16 proto = eth->h_proto;
        /* 802.1Q and 802.1ad (QinQ outer) tags; a cut tag leaves proto unparsed. */
#pragma unroll
        for (int i = 0; i < MAX_VLAN_TAGS; i++) {
            if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
                break;
            struct vlan_tag *tag = cur;
            if ((void *)(tag + 1) > data_end)
                break;
            proto = tag->proto;
            cur = tag + 1;
        }
        if (proto == bpf_htons(ETH_P_IP))
            mask = parse_ipv4(data, cur, data_end, header_len, flow, direction);
        else if (proto == bpf_htons(ETH_P_IPV6))
            mask = parse_ipv6(data, cur, data_end, header_len, flow, direction);
    }
    if (!(mask & TRANSPORT_CLASSES))
        mask |= CLASS_BIT(CLASS_OTHER);
    return mask | CLASS_BIT(CLASS_TOTAL);
}

static __always_inline void count(struct iface_counters *counts, __u32 direction, __u32 mask,
                                  __u64 packets, __u64 bytes)
{
    struct class_counters *c = &counts->direction[direction];
#pragma unroll
    for (int i = 0; i < NUM_CLASSES; i++) {
        if (mask & CLASS_BIT(i)) {
            c->packets[i] += packets;
            c->bytes[i] += bytes;
        }
    }
}

#ifdef FLOWS
/* Add an IP frame to this CPU's counts of its flow, whose entry its first frame makes (with the
 * other CPUs' counts zero); a frame racing another CPU's first frame of the same flow finds that
 * entry instead. An entry evicted at once (a table full of newer flows) loses the frame from its
 * flow only. */
static __always_inline void count_flow(__u32 direction, __u32 mask, struct flow_key *flow,
                                       __u64 packets, __u64 bytes)
{
    if (!(mask & IP_CLASSES))
        return;
    struct flow_counts *c = flows.lookup(flow);
    if (!c) {
        struct flow_counts first = {};
        first.packets[direction] = packets;
        first.bytes[direction] = bytes;
        if (flows.insert(flow, &first) == 0) {
            __u64 *created = flows_created.lookup(&flow->ifindex);
            if (created)
                *created += 1;
            return;
        }
        c = flows.lookup(flow);
        if (!c)
            return;
    }
    c->packets[direction] += packets;
    c->bytes[direction] += bytes;
}
#else
static __always_inline void count_flow(__u32 direction, __u32 mask, struct flow_key *flow,
                                       __u64 packets, __u64 bytes)
{
}
#endif

/* An aggregate of segs wire packets counts segs packets in every class but the flag classes:
 * a flag (a FIN, in practice: SYNs and RSTs carry no data to aggregate) is on its last segment
 * only, so it counts once, with that segment's bytes (the total less the full segments before it,
 * where the header length and gso_size tell them; else the aggregate's mean). Its flow counts
 * segs packets too. */
static __always_inline void count_frame(struct iface_counters *counts, __u32 direction,
                                        __u32 mask, struct flow_key *flow, __u64 segs,
                                        __u64 bytes, __u32 header_len, __u32 gso_size)
{
    count(counts, direction, mask & ~TCP_FLAG_CLASSES, segs, bytes);
    if (mask & TCP_FLAG_CLASSES) {
        __u64 last = bytes;
        if (segs > 1)
            last = header_len && gso_size ? bytes - (segs - 1) * (header_len + gso_size)
                                           : bytes / segs;
        count(counts, direction, mask & TCP_FLAG_CLASSES, 1, last);
    }
    count_flow(direction, mask, flow, segs, bytes);
}

/* Native XDP sees each frame as the driver received it, before GRO: one frame, one packet. */
int netmetrics_xdp(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 ifindex = ctx->ingress_ifindex;
    struct iface_counters *counts = counters_of(ifindex);
    if (!counts)
        return XDP_PASS;
    __u32 header_len;
    struct flow_key flow = {.ifindex = ifindex};
    __u32 mask = classify(data, data_end, &header_len, &flow, RX);

    count(counts, RX, mask, 1, data_end - data);
    count_flow(RX, mask, &flow, 1, data_end - data);
    return XDP_PASS;
}

/* The TC entry points: count one skb in direction (RX or TX), then let it go. TC_ACT_UNSPEC, not
 * TC_ACT_OK: both let the frame go, but TC_ACT_OK would also end the filter chain, hiding the
 * frame from any other tool's filter after ours. direction is a constant in each caller, so only
 * its branch is compiled into each program. */
static __always_inline int count_skb(struct __sk_buff *skb, __u32 direction)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    __u32 ifindex = skb->ifindex;
    struct iface_counters *counts = counters_of(ifindex);
    if (!counts)
        return TC_ACT_UNSPEC;
    __u32 header_len;
    struct flow_key flow = {.ifindex = ifindex};
    __u32 mask = classify(data, data_end, &header_len, &flow, direction);
    __u64 segs, bytes;

    if (direction == RX) {
        /* Ingress on the socket-buffer path, where GRO has merged frames and virtual NICs (veth,
         * tap, virtio) hand over GSO packets whole. cls_bpf pushes the MAC header back before
         * running us: data is the Ethernet header and len counts it. Such an aggregate stands for
         * gso_segs wire packets, each with its own copy of the L2-L4 headers: count them as the
         * kernel counts egress wire_len (qdisc_pkt_len_init): len + (segs - 1) * header length.
         * virtio and tap leave gso_segs 0 for the stack to compute ("dodgy" GSO): the kernel's
         * formula from gso_size then. When the parser cannot tell the header length, the packets
         * still count, the repeated headers' bytes do not. */
        __u32 rx_segs = skb->gso_segs;
        if (!rx_segs && skb->gso_size && header_len)
            rx_segs = (skb->len - header_len + skb->gso_size - 1) / skb->gso_size;
        if (!rx_segs)
            rx_segs = 1;
        segs = rx_segs;
        bytes = skb->len + (__u64)(rx_segs - 1) * header_len;
    } else {
        /* A GSO skb leaves as gso_segs wire packets, each with its own copy of the L2-L4
         * headers. wire_len is the kernel's count of their bytes (qdisc_pkt_len_init, run before
         * the egress hook: len + (segs - 1) * header length, tunnels and TCP options included);
         * it is 0 only when nobody set it (BPF_PROG_TEST_RUN without a context), and then len is
         * exact. */
        segs = skb->gso_segs ? skb->gso_segs : 1;
        bytes = skb->wire_len ? skb->wire_len : skb->len;
    }
    count_frame(counts, direction, mask, &flow, segs, bytes, header_len, skb->gso_size);
    return TC_ACT_UNSPEC;
}

/* Ingress on the socket-buffer path (skb mode). */
int netmetrics_tcin(struct __sk_buff *skb)
{
    return count_skb(skb, RX);
}

/* Egress. */
int netmetrics_tc(struct __sk_buff *skb)
{
    return count_skb(skb, TX);
}
