/* TCP health of one interface's connections, from two tracepoints (bpf/tcp_health.py loads it):
 *
 *   tcp:tcp_retransmit_skb  retransmitted segments
 *   tcp:tcp_probe           the connection's smoothed RTT, once per segment it receives
 *
 * A connection is the interface's when its local address is one of the interface's addresses
 * (the map local_addrs, kept up to date by the loader). Tracepoints, not kprobes or fentry:
 * BCC builds each tracepoint's argument struct from its format file in tracefs at run time, so
 * the fields are right on any kernel whatever headers are installed; struct sock read through
 * mismatched headers (sk_rx_dst_ifindex, say) would be read at the wrong offsets.
 *
 * Addresses are 16 bytes, IPv4 in its v4-mapped IPv6 form (::ffff:a.b.c.d): tcp_retransmit_skb
 * already gives IPv4 sockets' addresses that way, and a dual-stack IPv6 socket talking IPv4 has
 * one, so the one form matches every case with one lookup.
 *
 * RTT_BUCKETS comes from the loader (bpf/classes.py).
 */
#include <linux/skbuff.h>
#include <net/tcp.h>

struct addr_key {
    u8 addr[16];
};

BPF_HASH(local_addrs, struct addr_key, u8, 256);
BPF_PERCPU_ARRAY(retransmits, u64, 1);
BPF_PERCPU_ARRAY(rtt_hist, u64, RTT_BUCKETS);

static __always_inline int is_local(const u8 *addr16)
{
    struct addr_key key = {};
    __builtin_memcpy(key.addr, addr16, 16);
    return local_addrs.lookup(&key) != NULL;
}

static __always_inline int is_local_v4(const u8 *addr4)
{
    struct addr_key key = {};
    key.addr[10] = 0xff;
    key.addr[11] = 0xff;
    __builtin_memcpy(&key.addr[12], addr4, 4);
    return local_addrs.lookup(&key) != NULL;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
#ifdef RETRANSMIT_HAS_ERR
    /* Since 6.18 failed attempts (queue busy, no memory, no route) fire too: nothing was sent. */
    if (args->err != 0)
        return 0;
#endif
    /* saddr_v6 is the socket's own address for IPv6 and v4-mapped for IPv4 sockets. */
    if (!is_local(args->saddr_v6))
        return 0;
    /* One skb can carry several segments (TSO); the kernel adds its pcount to
     * tcpi_total_retrans, so do we. The one field not in the format: tcp_skb_cb in skb->cb,
     * whose place has not moved since 4.x. */
    const struct sk_buff *skb = args->skbaddr;
    u16 segs = 0;
    bpf_probe_read_kernel(&segs, sizeof(segs),
                          (void *)skb + offsetof(struct sk_buff, cb) +
                              offsetof(struct tcp_skb_cb, tcp_gso_segs));
    int zero = 0;
    u64 *count = retransmits.lookup(&zero);
    if (count)
        *count += segs ? segs : 1;
    return 0;
}

/* floor(log2(v)) for v > 0, by halving bit scan: five compares, no loop. */
static __always_inline u32 log2_u32(u32 v)
{
    u32 r = 0, shift;
    shift = (v > 0xffff) << 4; v >>= shift; r |= shift;
    shift = (v > 0xff) << 3;   v >>= shift; r |= shift;
    shift = (v > 0xf) << 2;    v >>= shift; r |= shift;
    shift = (v > 0x3) << 1;    v >>= shift; r |= shift;
    return r | (v >> 1);
}

TRACEPOINT_PROBE(tcp, tcp_probe)
{
    u32 srtt = args->srtt; /* microseconds (tp->srtt_us >> 3); 0 until the first sample */
    if (srtt == 0)
        return 0;
    /* saddr is a struct sockaddr_in or sockaddr_in6 holding the socket's own address. */
    u16 family = *(u16 *)args->saddr;
    if (family == AF_INET) {
        if (!is_local_v4(&args->saddr[4]))
            return 0;
    } else if (family == AF_INET6) {
        if (!is_local(&args->saddr[8]))
            return 0;
    } else {
        return 0;
    }
    int bucket = log2_u32(srtt);
    if (bucket > RTT_BUCKETS - 1)
        bucket = RTT_BUCKETS - 1;
    u64 *count = rtt_hist.lookup(&bucket);
    if (count)
        *count += 1;
    return 0;
}
