// netmetrics: the usage view. Bytes received and sent per day (the last 31) or month (the last
// 12) as bars, from /api/stats/usage, whose days are the server's (NETMETRICS_TIME_ZONE, shown
// as the server names them); beside them the current billing cycle against the interface's quota
// (used, and projected at today's pace) and the 95th percentile of the 5-minute averages over the
// window /api/stats/percentile defaults to (30 days, or the minute tier's retention if shorter).
'use strict';

(() => {
  const nm = (window.netmetrics = window.netmetrics || {});
  const fmt = nm.fmt;
  const {valueAxis, zeroBased, alpha} = nm.chartTheme;

  const COUNTS = {day: 31, month: 12};
  const REFRESH_MS = 5 * 60000;

  const $ = (id) => document.getElementById(id);
  const section = $('usage');
  const chartEl = $('usage-chart');
  const msgEl = $('usage-msg');
  const gauge = $('usage-gauge');

  let iface = null;
  let host = null;
  let by = 'day';
  let seq = 0;
  let timer = null;

  const state = {data: null}; // what the chart shows: {by, labels, rx, tx, total}

  // A period's first day ('YYYY-MM-DD' in the server's zone), as that date: never shifted into
  // the browser's zone.
  function dayLabel(firstDay, unit) {
    const [y, m, d] = firstDay.split('-').map(Number);
    const opts = unit === 'day' ? {month: 'short', day: 'numeric'} : {month: 'short', year: 'numeric'};
    return new Date(Date.UTC(y, m - 1, d)).toLocaleDateString(undefined, {...opts, timeZone: 'UTC'});
  }

  // ---------------------------------------------------------------- chart
  function bar(t, label, colorName, align) {
    const color = t.color(colorName);
    return {
      label,
      scale: 'bytes',
      stroke: color,
      fill: alpha(color, 0.55),
      width: 1,
      paths: uPlot.paths.bars({size: [0.42, 48], align}),
      points: {show: false},
      value: (u, v) => (v == null ? '—' : fmt.bytes(v)),
    };
  }

  const periodAt = (i) => (state.data && Number.isInteger(i) ? state.data.labels[i] : null);

  function options(t) {
    return {
      scales: {x: {time: false, range: (u, min, max) => [min - 0.5, max + 0.5]}, bytes: {range: zeroBased}},
      axes: [
        {
          stroke: t.fg,
          space: 44,
          grid: {show: false},
          ticks: {stroke: t.grid, width: 1, size: 4},
          values: (u, splits) => splits.map((i) => periodAt(i) || ''),
        },
        {...valueAxis(t, 'bytes', fmt.bytes, 3), size: 70},
      ],
      series: [
        {label: 'Period', value: (u, i) => periodAt(i) || '—'},
        bar(t, 'rx (in)', 'rx', -1),
        bar(t, 'tx (out)', 'tx', 1),
      ],
      cursor: {drag: {x: false, y: false}, points: {show: false}},
      legend: {live: true},
    };
  }

  const box = new nm.ChartBox(chartEl, options,
    () => (window.matchMedia('(max-width: 600px)').matches ? 200 : 240));

  function draw(usage) {
    const rows = usage.periods;
    state.data = {
      by: usage.by,
      labels: rows.map((r) => dayLabel(r.first_day, usage.by)),
      rx: rows.map((r) => r.rx_bytes),
      tx: rows.map((r) => r.tx_bytes),
      total: rows.map((r) => r.total_bytes),
    };
    box.setData([rows.map((r, i) => i), state.data.rx, state.data.tx]);
    Object.assign(chartEl.dataset, {bars: String(rows.length), by: usage.by});
    $('usage-zone').textContent = `${usage.by === 'day' ? 'days' : 'months'} in ${usage.time_zone}`;
  }

  // ---------------------------------------------------------------- beside it
  const percent = (v) => (v == null ? '—' : `${v.toFixed(1)}%`);

  function showCycle(cycles) {
    const row = cycles.periods[cycles.periods.length - 1];
    const until = new Date(row.end).toLocaleDateString(undefined, {month: 'short', day: 'numeric', timeZone: cycles.time_zone});
    $('usage-cycle').textContent = `${dayLabel(row.first_day, 'day')} – ${until}`;
    const quota = cycles.quota;
    gauge.hidden = !quota;
    const sofar = `${fmt.bytes(row.total_bytes)} so far, ${fmt.bytes(row.projected_total_bytes)} at today's pace`;
    if (!quota) {
      $('usage-quota').textContent = `${sofar}; no quota set (admin: Interface plans)`;
      return;
    }
    const used = row.quota_used_percent;
    const projected = row.quota_projected_percent;
    gauge.querySelector('.gauge-used').style.width = `${Math.min(100, used)}%`;
    gauge.querySelector('.gauge-projected').style.width = `${Math.min(100, projected)}%`;
    gauge.setAttribute('aria-valuenow', used.toFixed(1));
    Object.assign(gauge.dataset, {
      used: used.toFixed(1),
      projected: projected.toFixed(1),
      level: used >= 100 ? 'over' : projected >= 100 ? 'warn' : 'ok',
    });
    const counted = {rx: 'received', tx: 'sent', total: 'received and sent'}[quota.direction];
    $('usage-quota').textContent =
      `${percent(used)} of ${fmt.bytes(quota.bytes)} (${counted}) used, ${percent(projected)} at today's pace by ${until}`;
  }

  function showPercentile(p95) {
    for (const dd of document.querySelectorAll('#usage-p95 dd')) {
      const v = p95 ? p95.bps[dd.dataset.dir] : null;
      dd.textContent = v == null ? '—' : fmt.bw(v);
      dd.dataset.value = v == null ? '' : String(v);
    }
    $('usage-p95-window').textContent = p95
      ? `of ${p95.bucket_seconds / 60}-minute averages since ${fmt.dateTime(fmt.parseTs(p95.since))}`
      : '';
  }

  // ---------------------------------------------------------------- loading
  function url(path, params) {
    return nm.api.url(path, {...params, host, iface});
  }

  function message(text) {
    msgEl.hidden = !text;
    msgEl.textContent = text || '';
  }

  async function load() {
    clearTimeout(timer);
    timer = setTimeout(refresh, REFRESH_MS);
    if (!iface) return;
    const mine = ++seq;
    section.dataset.state = 'loading';
    const asked = by;
    const percentile = nm.api.getData(url('/api/stats/percentile', {p: '95'}), 'percentile').catch(() => null);
    try {
      const [usage, cycles] = await Promise.all([
        nm.api.getData(url('/api/stats/usage', {by: asked, count: String(COUNTS[asked])}), 'usage'),
        nm.api.getData(url('/api/stats/usage', {by: 'cycle', count: '1'}), 'usage'),
      ]);
      if (mine !== seq) return;
      draw(usage);
      showCycle(cycles);
      message(null);
      section.dataset.state = 'ok';
    } catch (err) {
      if (mine !== seq) return;
      section.dataset.state = 'error';
      message(String(err.message || err));
    }
    const p95 = await percentile;
    if (mine === seq) showPercentile(p95);
  }

  function refresh() {
    if (document.hidden) { timer = setTimeout(refresh, REFRESH_MS); return; }
    load();
  }

  function select(name) {
    by = name;
    section.dataset.by = name;
    for (const b of document.querySelectorAll('#usage-by button')) {
      b.setAttribute('aria-pressed', String(b.dataset.by === name));
    }
    load();
  }

  for (const b of document.querySelectorAll('#usage-by button')) {
    b.addEventListener('click', () => select(b.dataset.by));
  }

  nm.usage = {
    get data() { return state.data; },
    // The interface on screen, and its host (null: the API's choice), as nm.history.setIface.
    setIface(name, hostId) {
      const h = hostId || null;
      if (name === iface && h === host) return;
      iface = name;
      host = h;
      load();
    },
    reload: load,
    select,
  };
})();
