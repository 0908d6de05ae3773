"""Human units for rates and sizes: bit/s with k/M/G (powers of 1000), bytes with KiB/MiB/GiB."""


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
