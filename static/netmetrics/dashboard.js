// netmetrics live dashboard: WebSocket samples + polled run summary. No dependencies.
// Server strings are only ever written with textContent.
'use strict';

(() => {
  const CLASSES = ['ipv4', 'ipv6', 'tcp', 'udp', 'icmp', 'other', 'http', 'https', 'dns'];
  const LABELS = {total: 'Total', ipv4: 'IPv4', ipv6: 'IPv6', tcp: 'TCP', udp: 'UDP', icmp: 'ICMP',
    other: 'Other', http: 'HTTP', https: 'HTTPS', dns: 'DNS'};
  const STALE_MS = 3000;
  const SUMMARY_MS = 5000;
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  const STABLE_MS = 5000; // a connection that lived this long without an error counts as a success

  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const urlIface = (new URLSearchParams(location.search).get('iface') || '').trim() || null;
  const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws/metrics/' +
    (urlIface ? '?iface=' + encodeURIComponent(urlIface) : '');

  // ---------------------------------------------------------------- formatting (deterministic)
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

  const FORMATS = {
    bw: (v) => scaled(v, 1000, ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s']),
    mbps: (v) => (v / 1e6).toFixed(3),
    pps: (v) => nfPps.format(v) + ' pkt/s',
    rate: (v) => nfPps.format(v), // unit in the column header
    count: (v) => nfCount.format(v),
    bytes: (v) => scaled(v, 1024, ['B', 'KiB', 'MiB', 'GiB', 'TiB']),
    pct: (v) => v.toFixed(1) + '%',
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

  const getPath = (obj, path) => path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);

  // Fill every [data-field] under root from obj; the raw number goes to data-value.
  function fill(root, obj) {
    for (const el of root.querySelectorAll('[data-field]')) {
      const v = num(getPath(obj, el.dataset.field));
      const fmt = FORMATS[el.dataset.format] || String;
      el.textContent = v === null ? '—' : fmt(v);
      el.dataset.value = v === null ? '' : String(v);
      if (el.dataset.format === 'bytes') el.title = v === null ? '' : nfCount.format(v) + ' bytes';
    }
    for (const el of root.querySelectorAll('[data-bar]')) {
      const v = num(getPath(obj, el.dataset.bar));
      el.style.width = (v === null ? 0 : Math.min(100, Math.max(0, v))) + '%';
    }
  }

  // ---------------------------------------------------------------- rx/tx table skeleton
  function buildRatesTable() {
    const tbody = $('rx-tx-table').tBodies[0];
    for (const cls of ['total', ...CLASSES]) {
      const tr = document.createElement('tr');
      tr.dataset.class = cls;
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = LABELS[cls];
      tr.append(th);
      const prefix = cls === 'total' ? '' : cls + '_';
      for (const dir of ['rx', 'tx']) {
        for (const [metric, format] of [['bandwidth_bps', 'bw'], ['packets_per_sec', 'rate']]) {
          const td = document.createElement('td');
          Object.assign(td.dataset, {dir, class: cls, metric, field: `${dir}.${prefix}${metric}`, format, value: ''});
          td.textContent = '—';
          tr.append(td);
        }
      }
      tbody.append(tr);
    }
  }

  // ---------------------------------------------------------------- state
  let ws = null;
  let wsState = 'connecting';
  let backoff = BACKOFF_MIN_MS;
  let retryAt = 0;
  let retryTimer = null;
  let lastMsgAt = 0;      // client clock: last message (or connection open)
  let lastSample = null;
  let lastSampleAt = 0;   // client clock: last sample received
  let summaryIface = urlIface;
  let summaryTimer = null;
  let summarySeq = 0;

  function setWsState(state, text) {
    wsState = state;
    const el = $('ws-state');
    el.dataset.state = state;
    el.textContent = text || state;
  }

  function showError(detail) {
    const el = $('ws-error');
    el.hidden = !detail;
    el.textContent = detail || '';
  }

  function setIface(name) {
    $('iface-name').textContent = name || '—';
    const link = $('api-link');
    link.href = '/api/metrics/realtime' + (name ? '?iface=' + encodeURIComponent(name) : '');
  }

  // ---------------------------------------------------------------- rendering
  function renderSample(msg) {
    lastSample = msg;
    lastSampleAt = Date.now();
    body.dataset.hasData = 'true';
    body.dataset.tx = msg.tx == null ? 'off' : 'on';
    setIface(typeof msg.interface === 'string' ? msg.interface : urlIface);
    fill($('cards'), msg);
    fill($('rx-tx-table'), msg);
    fill($('totals-table'), msg);
    const when = parseTs(msg.timestamp);
    const last = $('last-update');
    last.textContent = when ? when.toLocaleString() : '—';
    last.dateTime = typeof msg.timestamp === 'string' ? msg.timestamp : '';
    body.dataset.lastTimestamp = typeof msg.timestamp === 'string' ? msg.timestamp : '';
    if (!urlIface && typeof msg.interface === 'string' && msg.interface && msg.interface !== summaryIface) {
      summaryIface = msg.interface;
      pollSummary();
    }
    renderStatus();
  }

  // Header pills that depend on time passing: sampler status, stale hint, reconnect countdown.
  function renderStatus() {
    const now = Date.now();
    const stale = wsState === 'live' && now - lastMsgAt > STALE_MS;
    body.dataset.stale = String(stale);
    const hint = $('stale-hint');
    hint.hidden = !stale;
    if (stale) hint.textContent = `stale — no data for ${Math.floor((now - lastMsgAt) / 1000)} s`;

    const sampler = $('sampler-status');
    if (!lastSample) {
      sampler.dataset.state = 'unknown';
      sampler.textContent = 'no samples yet';
    } else if (lastSample.sampler_running && now - lastSampleAt <= STALE_MS) {
      sampler.dataset.state = 'running';
      sampler.textContent = 'running';
    } else {
      // The server said "running" but nothing new arrived: we cannot tell, so say what we know.
      const what = lastSample.sampler_running ? 'no new samples' : 'stopped';
      sampler.dataset.state = lastSample.sampler_running ? 'stale' : 'stopped';
      sampler.textContent = `${what} — last sample at ${clock(parseTs(lastSample.timestamp))}`;
    }

    if (wsState === 'reconnecting') {
      const secs = Math.max(0, Math.ceil((retryAt - now) / 1000));
      setWsState('reconnecting', `reconnecting in ${secs} s`);
    }
  }

  // ---------------------------------------------------------------- WebSocket with back-off
  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (!('WebSocket' in window)) { setWsState('offline', 'offline — no WebSocket support'); return; }
    setWsState('connecting');
    let sock;
    try {
      sock = new WebSocket(wsUrl);
    } catch (err) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    let openedAt = 0;
    let gotError = false;
    sock.onopen = () => {
      if (ws !== sock) return;
      openedAt = lastMsgAt = Date.now();
      setWsState('live');
      renderStatus();
    };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      lastMsgAt = Date.now();
      let msg;
      try { msg = JSON.parse(ev.data); } catch (err) { console.warn('netmetrics: bad message', err); return; }
      if (!msg || typeof msg !== 'object') return;
      if (msg.type === 'sample') {
        backoff = BACKOFF_MIN_MS; // success: reset the back-off
        showError(null);
        renderSample(msg);
      } else if (msg.type === 'error') {
        gotError = true;
        showError('Server: ' + (typeof msg.detail === 'string' ? msg.detail : 'error'));
      }
    };
    sock.onclose = () => {
      if (ws !== sock) return;
      ws = null;
      if (openedAt && !gotError && Date.now() - openedAt >= STABLE_MS) backoff = BACKOFF_MIN_MS;
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    clearTimeout(retryTimer);
    if (navigator.onLine === false) { setWsState('offline'); return; } // the 'online' event reconnects
    retryAt = Date.now() + backoff;
    retryTimer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    setWsState('reconnecting');
    renderStatus();
  }

  window.addEventListener('online', () => {
    if (ws) return;
    backoff = BACKOFF_MIN_MS;
    connect();
  });
  window.addEventListener('offline', () => {
    if (ws) return; // an open socket reports its own close
    clearTimeout(retryTimer);
    setWsState('offline');
  });

  // ---------------------------------------------------------------- run summary (polled)
  function describeError(data, status) {
    if (data && typeof data.detail === 'string') return data.detail;
    if (data && typeof data === 'object') {
      const parts = Object.entries(data).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(' ') : String(v)}`);
      if (parts.length) return parts.join('; ');
    }
    return `summary unavailable (HTTP ${status})`;
  }

  function summaryMessage(state, text) {
    const box = $('summary');
    box.dataset.state = state;
    const msg = $('summary-msg');
    msg.hidden = !text;
    msg.textContent = text || '';
  }

  async function pollSummary() {
    clearTimeout(summaryTimer);
    summaryTimer = setTimeout(pollSummary, SUMMARY_MS);
    if (!summaryIface || document.hidden) return;
    const seq = ++summarySeq;
    const iface = summaryIface;
    const box = $('summary');
    try {
      const resp = await fetch('/api/stats/summary?iface=' + encodeURIComponent(iface),
        {headers: {Accept: 'application/json'}, cache: 'no-store', credentials: 'same-origin'});
      let data = null;
      try { data = await resp.json(); } catch (err) { data = null; }
      if (seq !== summarySeq) return; // a newer request is in flight
      box.dataset.iface = iface;
      if (resp.ok && data && typeof data === 'object') {
        fill(box, data);
        summaryMessage('ok', null);
      } else {
        fill(box, {});
        summaryMessage('error', describeError(data, resp.status));
      }
    } catch (err) {
      if (seq !== summarySeq) return;
      summaryMessage('error', 'summary unavailable (network error)');
    }
  }

  document.addEventListener('visibilitychange', () => { if (!document.hidden) pollSummary(); });

  // ---------------------------------------------------------------- start
  buildRatesTable();
  setIface(urlIface);
  connect();
  pollSummary();
  setInterval(renderStatus, 1000);
})();
