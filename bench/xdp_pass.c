/* The baseline for bench/xdp_cost: an XDP program that does nothing but pass the frame. */
#include <uapi/linux/bpf.h>

int xdp_pass(struct xdp_md *ctx)
{
    return XDP_PASS;
}
