"""Human units for rates, sizes and durations: bit/s with k/M/G (powers of 1000), bytes with
KiB/MiB/GiB."""

from datetime import timedelta


def _scale(value: float, base: int, units: tuple[str, ...]) -> tuple[float, str]:
    for unit in units[:-1]:
        if abs(value) < base:
            return value, unit
        value /= base
    return value, units[-1]


def _three_digits(value: float) -> str:
    return (
        f"{value:.0f}"
        if abs(value) >= 100
        else f"{value:.1f}"
        if abs(value) >= 10
        else f"{value:.2f}"
    )


def format_bps(bits_per_second: float) -> str:
    """1234567 -> '1.23 Mbit/s'."""
    value, unit = _scale(float(bits_per_second), 1000, ("bit/s", "kbit/s", "Mbit/s", "Gbit/s"))
    return f"{value:.0f} {unit}" if unit == "bit/s" else f"{_three_digits(value)} {unit}"


def format_bytes(count: float) -> str:
    """1536 -> '1.50 KiB'."""
    value, unit = _scale(float(count), 1024, ("B", "KiB", "MiB", "GiB", "TiB"))
    return f"{value:.0f} {unit}" if unit == "B" else f"{_three_digits(value)} {unit}"


def format_duration(span: timedelta) -> str:
    """Two units, largest first ('2 h 03 min', '3 d 04 h', '45 s'): precise enough for a run."""
    seconds = max(0, int(span.total_seconds()))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days} d {hours:02d} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"
