"""The columns that metrics/models.py adds to its models at run time, declared for the type checker.

CounterColumns gets one BigIntegerField per name in bpf.classes.ALL_COUNTER_NAMES and Rollup one
FloatField per peak column in metrics.models.PEAKS, by ``add_to_class`` loops that no type checker
follows. The classes below declare the same names with the types their values have on a model
instance; models.py makes them bases of those models under TYPE_CHECKING only, so at run time
the models and their migration state are unchanged. tests/test_counter_attributes.py fails when
these declarations and the models' real fields differ.
"""


class CounterAttributes:
    """One column per counter of bpf.classes.ALL_COUNTER_NAMES (CounterColumns)."""

    # COUNTER_NAMES: direction x class x unit.
    rx_total_packets: int
    rx_total_bytes: int
    rx_ipv4_packets: int
    rx_ipv4_bytes: int
    rx_ipv6_packets: int
    rx_ipv6_bytes: int
    rx_tcp_packets: int
    rx_tcp_bytes: int
    rx_udp_packets: int
    rx_udp_bytes: int
    rx_icmp_packets: int
    rx_icmp_bytes: int
    rx_other_packets: int
    rx_other_bytes: int
    rx_http_packets: int
    rx_http_bytes: int
    rx_https_packets: int
    rx_https_bytes: int
    rx_dns_packets: int
    rx_dns_bytes: int
    rx_syn_packets: int
    rx_syn_bytes: int
    rx_synack_packets: int
    rx_synack_bytes: int
    rx_rst_packets: int
    rx_rst_bytes: int
    rx_fin_packets: int
    rx_fin_bytes: int
    tx_total_packets: int
    tx_total_bytes: int
    tx_ipv4_packets: int
    tx_ipv4_bytes: int
    tx_ipv6_packets: int
    tx_ipv6_bytes: int
    tx_tcp_packets: int
    tx_tcp_bytes: int
    tx_udp_packets: int
    tx_udp_bytes: int
    tx_icmp_packets: int
    tx_icmp_bytes: int
    tx_other_packets: int
    tx_other_bytes: int
    tx_http_packets: int
    tx_http_bytes: int
    tx_https_packets: int
    tx_https_bytes: int
    tx_dns_packets: int
    tx_dns_bytes: int
    tx_syn_packets: int
    tx_syn_bytes: int
    tx_synack_packets: int
    tx_synack_bytes: int
    tx_rst_packets: int
    tx_rst_bytes: int
    tx_fin_packets: int
    tx_fin_bytes: int
    # HEALTH_NAMES: TCP retransmits and the RTT histogram's buckets.
    tcp_retransmits: int
    rtt_00: int
    rtt_01: int
    rtt_02: int
    rtt_03: int
    rtt_04: int
    rtt_05: int
    rtt_06: int
    rtt_07: int
    rtt_08: int
    rtt_09: int
    rtt_10: int
    rtt_11: int
    rtt_12: int
    rtt_13: int
    rtt_14: int
    rtt_15: int
    rtt_16: int
    rtt_17: int
    rtt_18: int
    rtt_19: int
    rtt_20: int
    rtt_21: int
    rtt_22: int
    rtt_23: int
    # FLOW_NAMES.
    flows_dropped: int


class PeakAttributes:
    """One column per peak per-second rate of metrics.models.PEAKS (Rollup)."""

    peak_bandwidth_bps: float
    peak_packets_per_sec: float
    rx_peak_bandwidth_bps: float
    rx_peak_packets_per_sec: float
    tx_peak_bandwidth_bps: float
    tx_peak_packets_per_sec: float


class _NoBase:
    """What models.py puts in place of the classes above at run time: a base that drops out of
    the class statement (PEP 560's ``__mro_entries__``), so the models' bases stay as they were."""

    def __mro_entries__(self, bases: tuple[object, ...]) -> tuple[()]:
        return ()


NO_BASE = _NoBase()
