// netmetrics: chart plumbing (uPlot, vendored) and the live charts of the last 5 minutes.
// window.netmetrics.ChartBox sizes a chart to its container and rebuilds it when the colour
// scheme changes; window.netmetrics.live keeps a bounded ring of the last 300 samples.
'use strict';

(() => {
  const nm = (window.netmetrics = window.netmetrics || {});
  const fmt = nm.fmt;

  // ---------------------------------------------------------------- theme (from CSS variables)
  const dark = window.matchMedia('(prefers-color-scheme: dark)');

  // A colour variable as the canvas can take it: the variables hold light-dark(light, dark), which
  // only an element's computed colour resolves (to rgb(...), for the scheme in use).
  const probe = document.createElement('span');
  probe.hidden = true;
  document.body.append(probe);

  function cssVar(name) {
    probe.style.color = `var(${name})`;
    return getComputedStyle(probe).color;
  }

  function alpha(color, a) {
    const hex = /^#([0-9a-f]{6})$/i.exec(color);
    if (hex) {
      const n = parseInt(hex[1], 16);
      return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
    }
    const rgb = /^rgba?\((\d+), (\d+), (\d+)/.exec(color);
    return rgb ? `rgba(${rgb[1]}, ${rgb[2]}, ${rgb[3]}, ${a})` : color;
  }

  function theme() {
    return {
      fg: cssVar('--muted'),
      grid: cssVar('--grid'),
      color: (name) => cssVar('--c-' + name),
    };
  }

  // 24-hour local time on the axis; the history axis adds the date where the day changes.
  const CLOCK_TICKS = [
    [60, '{HH}:{mm}', null, null, null, null, null, null, 0],
    [1, '{HH}:{mm}:{ss}', null, null, null, null, null, null, 0],
  ];
  const DATE_TICKS = [
    [86400 * 365, '{YYYY}', null, null, null, null, null, null, 1],
    [86400 * 28, '{MMM}', '\n{YYYY}', null, null, null, null, null, 1],
    [86400, '{MMM} {D}', '\n{YYYY}', null, null, null, null, null, 1],
    [60, '{HH}:{mm}', '\n{MMM} {D}', null, '\n{MMM} {D}', null, null, null, 1],
    [1, '{HH}:{mm}:{ss}', '\n{MMM} {D}', null, '\n{MMM} {D}', null, null, null, 1],
  ];

  function timeAxis(t, withDates) {
    return {
      stroke: t.fg,
      space: 52,
      size: withDates ? 44 : 28,
      values: withDates ? DATE_TICKS : CLOCK_TICKS,
      grid: {stroke: t.grid, width: 1},
      ticks: {stroke: t.grid, width: 1, size: 4},
    };
  }

  // The x series' legend entry (shown while hovering).
  function timeSeries(withDate) {
    return {label: 'Time', value: (u, v) => (v == null ? '—' : (withDate ? fmt.dateTime : fmt.clock)(new Date(v * 1000)))};
  }

  function valueAxis(t, scale, format, side) {
    return {
      scale,
      side,
      stroke: t.fg,
      size: 56,
      grid: {stroke: t.grid, width: 1, show: side !== 1},
      ticks: {show: false},
      values: (u, splits) => splits.map((v) => format(v)),
    };
  }

  // A line series; extra: {fill, dash, width, show}.
  function line(t, label, colorName, scale, format, extra = {}) {
    const color = t.color(colorName);
    const s = {
      label,
      scale,
      stroke: color,
      width: extra.width || 1.5,
      spanGaps: false,
      points: {show: false},
      value: (u, v) => (v == null ? '—' : format(v)),
    };
    if (extra.fill) s.fill = alpha(color, 0.14);
    if (extra.dash) s.dash = extra.dash;
    if (extra.show === false) s.show = false;
    return s;
  }

  const zeroBased = (u, min, max) => [0, max > 0 ? max * 1.08 : 1];

  // ---------------------------------------------------------------- ChartBox
  // Creates the chart once its container has a width, follows the container's size and rebuilds
  // the chart (same data) when light/dark switches, since uPlot takes colours at creation.
  const boxes = [];

  // legend: 'hover' shows values only under the cursor; 'latest' shows the newest point's
  // values otherwise (a live read-out).
  class ChartBox {
    constructor(el, makeOptions, height, legend = 'hover') {
      this.el = el;
      this.makeOptions = makeOptions;
      this.height = height;
      this.legend = legend;
      this.hover = false;
      el.dataset.legend = legend;
      el.dataset.hover = 'false';
      this.data = null;
      this.chart = null;
      this.observer = new ResizeObserver(() => this.fit());
      this.observer.observe(el);
      boxes.push(this);
    }

    size() {
      const width = Math.floor(this.el.clientWidth);
      const height = typeof this.height === 'function' ? this.height() : this.height;
      return {width, height};
    }

    fit() {
      const {width, height} = this.size();
      if (width <= 0 || !this.data) return;
      if (!this.chart) {
        this.chart = new uPlot({...this.makeOptions(theme()), width, height}, this.data, this.el);
        const over = this.chart.over;
        over.addEventListener('mouseenter', () => { this.hover = true; this.el.dataset.hover = 'true'; });
        over.addEventListener('mouseleave', () => {
          this.hover = false;
          this.el.dataset.hover = 'false';
          setTimeout(() => this.showLatest(), 0); // after uPlot's own reset of the legend
        });
        this.showLatest();
      } else if (width !== this.chart.width || height !== this.chart.height) {
        this.chart.setSize({width, height});
      }
    }

    setData(data, resetScales = true) {
      this.data = data;
      if (this.chart) {
        this.chart.setData(data, resetScales);
        this.showLatest();
      } else {
        this.fit();
      }
    }

    showLatest() {
      if (this.legend !== 'latest' || !this.chart || this.hover) return;
      const n = this.data[0].length;
      if (n) this.chart.setLegend({idx: n - 1}, false);
    }

    rebuild() {
      if (this.chart) { this.chart.destroy(); this.chart = null; }
      this.fit();
    }
  }

  dark.addEventListener('change', () => { for (const box of boxes) box.rebuild(); });
  const phone = () => window.matchMedia('(max-width: 600px)').matches;

  nm.ChartBox = ChartBox;
  nm.chartTheme = {theme, timeAxis, timeSeries, valueAxis, line, zeroBased, alpha};

  // ---------------------------------------------------------------- live ring and charts
  const CAPACITY = 300; // points: 5 minutes at one sample a second
  const WINDOW_S = 300;
  // The protocol mix: the transports (solid), then the applications (dashed), as the server says.
  const {transport: TRANSPORT, app: APP, labels: LABELS} = nm.api.rules;
  const MIX = [...TRANSPORT, ...APP];
  const KEYS = ['rx_bw', 'tx_bw', 'rx_pps', 'tx_pps', ...MIX];

  // Column arrays of real samples only, oldest first, never longer than CAPACITY.
  const ring = {x: []};
  for (const k of KEYS) ring[k] = [];
  let interval = 1;      // seconds between samples (from the sampler run)
  let clockOffset = 0;   // server time minus browser time, from the newest live sample

  function clear() {
    ring.x.length = 0;
    for (const k of KEYS) ring[k].length = 0;
  }

  function trim() {
    const extra = ring.x.length - CAPACITY;
    if (extra <= 0) return;
    ring.x.splice(0, extra);
    for (const k of KEYS) ring[k].splice(0, extra);
  }

  const val = (o, k) => (o && typeof o[k] === 'number' && Number.isFinite(o[k]) ? o[k] : null);

  function pointFromMessage(msg) {
    const when = fmt.parseTs(msg.timestamp);
    if (!when) return null;
    const rx = msg.rx || {};
    const tx = msg.tx || null;
    const p = {
      x: when.getTime() / 1000,
      rx_bw: val(rx, 'bandwidth_bps'),
      tx_bw: tx ? val(tx, 'bandwidth_bps') : null,
      rx_pps: val(rx, 'packets_per_sec'),
      tx_pps: tx ? val(tx, 'packets_per_sec') : null,
    };
    for (const cls of MIX) {
      const a = val(rx, cls + '_bandwidth_bps');
      const b = tx ? val(tx, cls + '_bandwidth_bps') : 0;
      p[cls] = a === null ? null : a + (b || 0);
    }
    return p;
  }

  function append(p) {
    const n = ring.x.length;
    if (n && p.x <= ring.x[n - 1]) return false; // a repeat (e.g. the latest sample on reconnect)
    ring.x.push(p.x);
    for (const k of KEYS) ring[k].push(p[k]);
    trim();
    return true;
  }

  // Merge backfilled points under the live ones: a backfilled second within 1 s of a live point
  // is the same sample (history buckets by the second the sample started).
  function merge(points) {
    const live = ring.x.map((x, i) => {
      const p = {x};
      for (const k of KEYS) p[k] = ring[k][i];
      return p;
    });
    const all = live.concat(points.filter((b) => !live.some((p) => Math.abs(p.x - b.x) < 1)));
    all.sort((a, b) => a.x - b.x);
    clear();
    for (const p of all.slice(-CAPACITY)) {
      ring.x.push(p.x);
      for (const k of KEYS) ring[k].push(p[k]);
    }
  }

  // Chart arrays: the ring with a null after every gap longer than 2.5 intervals, so uPlot
  // draws the gap (spanGaps: false) instead of a line across it.
  function columns(keys) {
    const xs = [];
    const cols = keys.map(() => []);
    const gap = 2.5 * interval;
    for (let i = 0; i < ring.x.length; i++) {
      if (i > 0 && ring.x[i] - ring.x[i - 1] > gap) {
        xs.push(ring.x[i - 1] + interval);
        for (const c of cols) c.push(null);
      }
      xs.push(ring.x[i]);
      keys.forEach((k, j) => cols[j].push(ring[k][i]));
    }
    return [xs, ...cols];
  }

  const nowServer = () => Date.now() / 1000 + clockOffset;
  const windowRange = () => { const now = nowServer(); return [now - WINDOW_S, now]; };

  function liveOptions(series, scale, format, legend = true) {
    return (t) => ({
      scales: {x: {time: true, range: windowRange}, [scale]: {range: zeroBased}},
      axes: [timeAxis(t, false), valueAxis(t, scale, format, 3)],
      series: [timeSeries(false), ...series(t)],
      cursor: {drag: {x: false, y: false}, points: {size: 6}},
      legend: {live: true, show: legend},
    });
  }

  const els = {
    bw: document.getElementById('live-bandwidth'),
    pps: document.getElementById('live-packets'),
    mix: document.getElementById('live-mix'),
  };

  const bwBox = new ChartBox(els.bw, liveOptions((t) => [
    line(t, 'rx (in)', 'rx', 'bw', fmt.bw, {fill: true}),
    line(t, 'tx (out)', 'tx', 'bw', fmt.bw, {fill: true}),
  ], 'bw', fmt.bwAxis), () => (phone() ? 170 : 210), 'latest');

  const ppsBox = new ChartBox(els.pps, liveOptions((t) => [
    line(t, 'rx (in)', 'rx', 'pps', fmt.pps),
    line(t, 'tx (out)', 'tx', 'pps', fmt.pps),
  ], 'pps', fmt.ppsAxis), () => (phone() ? 120 : 140), 'latest');

  const mixBox = new ChartBox(els.mix, liveOptions((t) => MIX.map((cls) =>
    line(t, LABELS[cls], cls, 'bw', fmt.bw, APP.includes(cls) ? {dash: [5, 3]} : {})), 'bw', fmt.bwAxis, false),
  () => (phone() ? 200 : 300));

  function render() {
    bwBox.setData(columns(['rx_bw', 'tx_bw']));
    ppsBox.setData(columns(['rx_pps', 'tx_pps']));
    mixBox.setData(columns(MIX));
    const n = String(ring.x.length);
    const last = ring.x.length ? String(ring.x[ring.x.length - 1]) : '';
    for (const el of Object.values(els)) { el.dataset.points = n; el.dataset.last = last; }
  }

  // Move the time axis on with the clock, so a stopped sampler shows as a growing gap.
  function tick() {
    for (const box of [bwBox, ppsBox, mixBox]) {
      if (!box.chart) continue;
      const [min, max] = windowRange();
      box.chart.setScale('x', {min, max});
    }
  }

  // ---------------------------------------------------------------- share of the last second
  const shareEls = {
    transport: document.getElementById('share-transport'),
    app: document.getElementById('share-app'),
    legend: document.getElementById('share-legend'),
  };

  function buildShare() {
    const segs = (el, classes, rest) => {
      for (const cls of classes) {
        const s = document.createElement('span');
        s.className = 'seg-' + cls;
        s.dataset.class = cls;
        s.style.width = '0%';
        el.append(s);
      }
      if (rest) {
        const s = document.createElement('span');
        s.className = 'seg-rest';
        s.dataset.class = 'rest';
        s.style.width = '0%';
        el.append(s);
      }
    };
    segs(shareEls.transport, TRANSPORT, false);
    segs(shareEls.app, APP, true);
    for (const cls of MIX) {
      const li = document.createElement('li');
      li.dataset.class = cls;
      const sw = document.createElement('i');
      sw.className = 'swatch seg-' + cls;
      const name = document.createElement('span');
      name.textContent = LABELS[cls];
      const pct = document.createElement('b');
      pct.textContent = '—';
      li.append(sw, name, pct);
      shareEls.legend.append(li);
    }
  }

  function renderShare(p) {
    const total = (p.rx_bw || 0) + (p.tx_bw || 0);
    let used = 0;
    for (const cls of MIX) {
      const share = total > 0 && p[cls] !== null ? Math.min(100, (100 * p[cls]) / total) : 0;
      const seg = document.querySelector(`.share-bar [data-class="${cls}"]`);
      seg.style.width = share.toFixed(2) + '%';
      seg.title = `${LABELS[cls]}: ${share.toFixed(1)}% (${fmt.bw(p[cls] || 0)})`;
      const li = shareEls.legend.querySelector(`[data-class="${cls}"] b`);
      li.textContent = total > 0 ? share.toFixed(1) + '%' : '—';
      if (APP.includes(cls)) used += share;
    }
    const rest = shareEls.app.querySelector('[data-class="rest"]');
    rest.style.width = (total > 0 ? Math.max(0, 100 - used) : 0).toFixed(2) + '%';
    rest.title = 'other ports';
  }

  buildShare();
  render();

  nm.live = {
    CAPACITY,
    get length() { return ring.x.length; },
    get ring() { return ring; },
    setInterval(seconds) { if (seconds > 0) interval = seconds; },
    // A live WebSocket message: returns true when it added a point.
    push(msg) {
      const p = pointFromMessage(msg);
      if (!p) return false;
      clockOffset = p.x - Date.now() / 1000;
      renderShare(p);
      const added = append(p);
      if (added) render();
      return added;
    },
    // History at step=1s: {timestamps, rx: series, tx: series or null}.
    backfill(timestamps, rx, tx) {
      const points = [];
      const cutoff = nowServer() - WINDOW_S;
      timestamps.forEach((t, i) => {
        if (rx.bandwidth_bps[i] == null || t + 1 < cutoff) return;
        const p = {
          x: t + 1, // history's timestamps are each second's start; live points are its end
          rx_bw: rx.bandwidth_bps[i],
          tx_bw: tx ? tx.bandwidth_bps[i] : null,
          rx_pps: rx.packets_per_sec[i],
          tx_pps: tx ? tx.packets_per_sec[i] : null,
        };
        for (const cls of MIX) {
          const a = rx[cls + '_bandwidth_bps'][i];
          p[cls] = a == null ? null : a + ((tx && tx[cls + '_bandwidth_bps'][i]) || 0);
        }
        points.push(p);
      });
      merge(points);
      render();
    },
    reset() { clear(); render(); },
    tick,
    MIX,
  };
})();
