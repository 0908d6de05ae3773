// netmetrics: the history view. Ranges 1 h, 24 h, 7 d, 30 d or custom, from /api/metrics/history
// at step=auto; a step without samples is null and drawn as a gap. Drag to zoom (the zoomed range
// is fetched again, so it gets a finer step), double-click to go back; CSV of what is shown.
'use strict';

(() => {
  const nm = (window.netmetrics = window.netmetrics || {});
  const fmt = nm.fmt;
  const {timeAxis, timeSeries, valueAxis, line, zeroBased} = nm.chartTheme;

  const RANGES = {'1h': 3600, '24h': 86400, '7d': 7 * 86400, '30d': 30 * 86400};
  const REFRESH_MS = 60000;
  const STEP_TEXT = {'1s': 'one point a second', '1m': 'one point a minute', '1h': 'one point an hour'};
  const FIELDS = 'bandwidth_bps,peak_bandwidth_bps';

  const $ = (id) => document.getElementById(id);
  const section = $('history');
  const chartEl = $('history-chart');
  const csv = $('history-csv');
  const custom = $('history-custom');
  const from = $('range-from');
  const to = $('range-to');
  const msgEl = $('history-msg');

  let iface = null;
  let host = null;        // the host's id, once the dashboard knows it
  let range = '1h';
  let customSince = null; // ms
  let customUntil = null;
  let zoom = null;        // {since, until} in ms while zoomed in
  let seq = 0;
  let timer = null;
  let shown = null;       // {since, until} in ms of the data on screen
  let half = 0;           // seconds: points sit in the middle of their step

  const state = {data: null};

  // ---------------------------------------------------------------- chart
  function options(t) {
    return {
      scales: {x: {time: true}, bw: {range: zeroBased}},
      axes: [timeAxis(t, true), valueAxis(t, 'bw', fmt.bwAxis, 3)],
      series: [
        // The hovered point's step, by its start.
        {...timeSeries(true), value: (u, v) => (v == null ? '—' : fmt.dateTime(new Date((v - half) * 1000)))},
        line(t, 'rx (in)', 'rx', 'bw', fmt.bw, {fill: true}),
        line(t, 'tx (out)', 'tx', 'bw', fmt.bw, {fill: true}),
        line(t, 'rx peak', 'rx', 'bw', fmt.bw, {dash: [2, 3], width: 1}),
        line(t, 'tx peak', 'tx', 'bw', fmt.bw, {dash: [2, 3], width: 1}),
      ],
      cursor: {
        drag: {x: true, y: false, setScale: false},
        bind: {
          // Double-click: back to the chosen range (uPlot's own would only refit this data).
          dblclick: () => () => { if (zoom) { zoom = null; load(); } return null; },
        },
      },
      hooks: {
        setSelect: [(u) => {
          const {left, width} = u.select;
          if (width < 3) return;
          const since = u.posToVal(left, 'x') * 1000;
          const until = u.posToVal(left + width, 'x') * 1000;
          u.setSelect({left: 0, width: 0, top: 0, height: 0}, false);
          if (until - since < 60000) return; // less than a minute: nothing finer to show
          zoom = {since, until};
          load();
        }],
      },
      legend: {live: true},
    };
  }

  const box = new nm.ChartBox(chartEl, options,
    () => (window.matchMedia('(max-width: 600px)').matches ? 220 : 300));

  // ---------------------------------------------------------------- range and URLs
  function currentRange() {
    if (zoom) return zoom;
    if (range === 'custom') return {since: customSince, until: customUntil};
    const until = Date.now();
    return {since: until - RANGES[range] * 1000, until};
  }

  function query(r, extra) {
    return nm.api.url('/api/metrics/history', {
      since: new Date(r.since).toISOString(),
      until: new Date(r.until).toISOString(),
      step: 'auto',
      host,
      iface,
      ...extra,
    });
  }

  function csvHref() {
    const r = currentRange();
    if (r.since == null) return '/api/metrics/history?format=csv';
    return query(r, {format: 'csv'});
  }

  // A relative range moves on with the clock: take "now" when the link is followed.
  csv.addEventListener('click', () => { csv.href = csvHref(); });

  function message(text) {
    msgEl.hidden = !text;
    msgEl.textContent = text || '';
  }

  // ---------------------------------------------------------------- loading
  async function load() {
    clearTimeout(timer);
    timer = null;
    if (!zoom && range !== 'custom') timer = setTimeout(refresh, REFRESH_MS);
    const r = currentRange();
    if (!iface || r.since == null || r.until == null) return;
    const mine = ++seq;
    section.dataset.state = 'loading';
    csv.href = csvHref();
    try {
      const [rx, tx] = await Promise.all([
        nm.api.getData(query(r, {direction: 'rx', fields: FIELDS}), 'history'),
        nm.api.getData(query(r, {direction: 'tx', fields: FIELDS}), 'history'),
      ]);
      if (mine !== seq) return;
      draw(rx, tx, r);
    } catch (err) {
      if (mine !== seq) return;
      section.dataset.state = 'error';
      message(String(err.message || err));
    }
  }

  function draw(rx, tx, r) {
    const ts = rx.timestamps;
    const series = {
      rx_bandwidth_bps: rx.series.bandwidth_bps,
      tx_bandwidth_bps: tx.series.bandwidth_bps,
      rx_peak_bandwidth_bps: rx.series.peak_bandwidth_bps,
      tx_peak_bandwidth_bps: tx.series.peak_bandwidth_bps,
    };
    state.data = {interface: rx.interface, step: rx.step, timestamps: ts, series};
    shown = r;
    // A minute or hour step starts at its timestamp; draw the point in the middle of it.
    half = rx.step === '1m' ? 30 : rx.step === '1h' ? 1800 : 0;
    const xs = ts.map((t) => t + half);
    box.setData([xs, series.rx_bandwidth_bps, series.tx_bandwidth_bps,
      series.rx_peak_bandwidth_bps, series.tx_peak_bandwidth_bps]);
    if (box.chart) box.chart.setScale('x', {min: r.since / 1000, max: r.until / 1000});

    const nulls = series.rx_bandwidth_bps.filter((v) => v === null).length;
    Object.assign(chartEl.dataset, {points: String(ts.length), nulls: String(nulls), step: rx.step});
    section.dataset.state = 'ok';
    section.dataset.zoomed = zoom ? 'true' : 'false';
    const span = `${fmt.dateTime(new Date(r.since))} – ${fmt.dateTime(new Date(r.until))}`;
    $('history-step').textContent = `${span} · ${STEP_TEXT[rx.step] || rx.step}${zoom ? ' · zoomed' : ''}`;
    if (ts.length && nulls === ts.length) message('No samples in this range.');
    else message(null);
  }

  function refresh() {
    if (document.hidden) { timer = setTimeout(refresh, REFRESH_MS); return; }
    load();
  }

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && !zoom && range !== 'custom' && shown && Date.now() - shown.until > REFRESH_MS) load();
  });

  // ---------------------------------------------------------------- controls
  const pad = (n) => String(n).padStart(2, '0');
  const localInput = (ms) => {
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  };

  function select(name) {
    range = name;
    zoom = null;
    section.dataset.range = name;
    for (const b of document.querySelectorAll('#history-ranges button')) {
      b.setAttribute('aria-pressed', String(b.dataset.range === name));
    }
    custom.hidden = name !== 'custom';
    if (name === 'custom') {
      if (customSince == null) {
        const r = shown || currentRange();
        from.value = localInput(r.since);
        to.value = localInput(r.until);
        from.focus();
        return;
      }
    }
    load();
  }

  for (const b of document.querySelectorAll('#history-ranges button')) {
    b.addEventListener('click', () => select(b.dataset.range));
  }

  custom.addEventListener('submit', (ev) => {
    ev.preventDefault();
    // datetime-local values are local wall-clock times; Date parses them as such.
    const since = new Date(from.value).getTime();
    const until = new Date(to.value).getTime();
    if (!Number.isFinite(since) || !Number.isFinite(until) || until <= since) {
      message('Pick a start before the end.');
      return;
    }
    customSince = since;
    customUntil = until;
    zoom = null;
    load();
  });

  nm.history = {
    get data() { return state.data; },
    get range() { return range; },
    // The interface on screen, and its host (null: the API's choice, as on a single host).
    setIface(name, hostId) {
      const h = hostId || null;
      if (name === iface && h === host) return;
      iface = name;
      host = h;
      zoom = null;
      load();
    },
    reload: load,
    select,
  };
})();
