/* The baselines for bench/xdp_cost: programs that do nothing but let the frame go, at each hook
 * the netmetrics ingress programs run at. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>

int xdp_pass(struct xdp_md *ctx)
{
    return XDP_PASS;
}

int tc_unspec(struct __sk_buff *skb)
{
    return TC_ACT_UNSPEC;
}
