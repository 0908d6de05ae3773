/* Retransmitted segments of the watched interfaces' connections, by interface, from the tracepoint
 * tcp:tcp_retransmit_skb (bpf/tcp_health.py loads it; RTT comes from sock_diag there, at no cost
 * per packet).
 *
 * A connection is an interface's when its local address is one of the interface's addresses
 * (the map local_addrs, address to ifindex, kept up to date by the loader). Tracepoints, not kprobes or fentry:
 * BCC builds each tracepoint's argument struct from its format file in tracefs at run time, so
 * the fields are right on any kernel whatever headers are installed; struct sock read through
 * mismatched headers (sk_rx_dst_ifindex, say) would be read at the wrong offsets.
 *
 * Addresses are 16 bytes, IPv4 in its v4-mapped IPv6 form (::ffff:a.b.c.d): tcp_retransmit_skb
 * already gives IPv4 sockets' addresses that way, and a dual-stack IPv6 socket talking IPv4 has
 * one, so the one form matches every case with one lookup.
 */
#include <linux/skbuff.h>
#include <net/tcp.h>

struct addr_key {
    u8 addr[16];
};

BPF_HASH(local_addrs, struct addr_key, u32, 4096);
/* By ifindex; the loader makes an interface's entry when it starts watching it. */
BPF_TABLE("percpu_hash", u32, u64, retransmits, MAX_INTERFACES);

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
#ifdef RETRANSMIT_HAS_ERR
    /* Since 6.18 failed attempts (queue busy, no memory, no route) fire too: nothing was sent. */
    if (args->err != 0)
        return 0;
#endif
    /* saddr_v6 is the socket's own address for IPv6 and v4-mapped for IPv4 sockets. */
    struct addr_key key = {};
    __builtin_memcpy(key.addr, args->saddr_v6, 16);
    u32 *ifindex = local_addrs.lookup(&key);
    if (!ifindex)
        return 0;
    u64 *count = retransmits.lookup(ifindex);
    if (!count)
        return 0;
    /* One skb can carry several segments (TSO); the kernel adds its pcount to
     * tcpi_total_retrans, so do we. The one field not in the format: tcp_skb_cb in skb->cb,
     * whose place has not moved since 4.x. */
    const struct sk_buff *skb = args->skbaddr;
    u16 segs = 0;
    bpf_probe_read_kernel(&segs, sizeof(segs),
                          (void *)skb + offsetof(struct sk_buff, cb) +
                              offsetof(struct tcp_skb_cb, tcp_gso_segs));
    *count += segs ? segs : 1;
    return 0;
}
