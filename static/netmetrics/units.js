// netmetrics: human units and times, shared by the dashboard's scripts (window.netmetrics.fmt).
// bit/s and packets are decimal (k, M, G); bytes are binary (KiB, MiB, GiB). Times are local.
'use strict';

(() => {
  const nm = (window.netmetrics = window.netmetrics || {});

  const nfCount = new Intl.NumberFormat('en-US', {maximumFractionDigits: 0});
  const nfPps = new Intl.NumberFormat('en-US', {maximumFractionDigits: 1});
  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);

  // Three significant digits for 0 <= x < 1000 (1024 for binary units).
  function sig3(x) {
    if (x === 0) return '0';
    if (x >= 100) return x.toFixed(0);
    if (x >= 10) return x.toFixed(1);
    return x.toFixed(2);
  }

  function scaled(v, base, units) {
    let x = Math.abs(v);
    let i = 0;
    while (i < units.length - 1 && Number(sig3(x)) >= base) { x /= base; i += 1; }
    return (v < 0 ? '-' : '') + sig3(x) + ' ' + units[i];
  }

  // Axis labels: short, and without trailing zeros ("1.5 M", "200 k").
  function short(v, base, units) {
    if (v === 0) return '0';
    let x = Math.abs(v);
    let i = 0;
    while (i < units.length - 1 && x >= base) { x /= base; i += 1; }
    const s = x >= 100 ? x.toFixed(0) : String(Number(x.toPrecision(3)));
    return (v < 0 ? '-' : '') + s + (units[i] ? ' ' + units[i] : '');
  }

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    const p2 = (n) => String(n).padStart(2, '0');
    if (d) return `${d} d ${p2(h)} h`;
    if (h) return `${h} h ${p2(m)} min`;
    if (m) return `${m} min ${p2(sec)} s`;
    return `${sec} s`;
  }

  const BW_UNITS = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s'];
  const FORMATS = {
    bw: (v) => scaled(v, 1000, BW_UNITS),
    mbps: (v) => (v / 1e6).toFixed(3),
    pps: (v) => nfPps.format(v) + ' pkt/s',
    rate: (v) => nfPps.format(v), // unit in the column header
    count: (v) => nfCount.format(v),
    bytes: (v) => scaled(v, 1024, ['B', 'KiB', 'MiB', 'GiB', 'TiB']),
    pct: (v) => v.toFixed(1) + '%',
    // RTTs arrive as the upper edge of a log2 bucket: "at most" this long.
    us: (v) => (v >= 1000 ? '≤ ' + (v / 1000).toFixed(v >= 10000 ? 0 : 1) + ' ms' : '≤ ' + Math.round(v) + ' µs'),
    duration,
  };

  function parseTs(ts) {
    if (typeof ts !== 'string') return null;
    // Python emits microseconds; keep milliseconds so every browser parses it.
    const d = new Date(ts.replace(/(\.\d{3})\d+/, '$1'));
    return Number.isNaN(d.getTime()) ? null : d;
  }

  function clock(date) {
    return date ? date.toLocaleTimeString(undefined,
      {hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23'}) : '—';
  }

  function dateTime(date) {
    return date ? date.toLocaleString(undefined, {dateStyle: 'medium', timeStyle: 'medium', hourCycle: 'h23'}) : '—';
  }

  nm.fmt = {
    num,
    FORMATS,
    bw: FORMATS.bw,
    pps: FORMATS.pps,
    bytes: FORMATS.bytes,
    count: FORMATS.count,
    // axis ticks
    bwAxis: (v) => short(v, 1000, ['', 'k', 'M', 'G', 'T']),
    ppsAxis: (v) => short(v, 1000, ['', 'k', 'M', 'G']),
    duration,
    parseTs,
    clock,
    dateTime,
  };
})();
