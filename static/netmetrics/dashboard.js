// netmetrics live dashboard: the WebSocket (with back-off), the cards and tables, the interface
// selector and sampler status (/api/interfaces), the host on screen, and the run summary. Charts:
// charts.js and history.js; usage and the 95th percentile: usage.js; top talkers: flows.js; the
// host selector and the fleet overview: fleet.js; the classes and the stale factor: the server
// (api.js).
// Server strings are only ever written with textContent.
'use strict';

(() => {
  const nm = (window.netmetrics = window.netmetrics || {});
  const fmt = nm.fmt;
  const {rules, getJson, describeError} = nm.api;
  const MODES = {native: 'native XDP', skb: 'skb mode', host: 'sum of interfaces'};
  const HOST_TOTAL = rules.host_total; // the host total's name; /api/interfaces marks it `total`
  const SUMMARY_MS = 5000;
  // The selector's labels show each interface's rate from /api/interfaces: at 10 s they were
  // no longer current. The interface on screen gets its rate from every live message instead
  // (labelOptions), so this period only bounds how old the other entries' rates are.
  const INTERFACES_MS = 5000;
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  const STABLE_MS = 5000; // a connection that lived this long without an error counts as a success
  // The WebSocket's refusals (access/live.py), each after an error message saying why: no login
  // (or logged out, in any tab): to the login page, then back; not a viewer: retrying cannot help.
  const NOT_LOGGED_IN = 4401;
  const NOT_ALLOWED = 4403;

  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const fromUrl = (name) => (new URLSearchParams(location.search).get(name) || '').trim() || null;

  // ---------------------------------------------------------------- state
  // The host on screen: the one chosen (?host=, the selector, the overview), else the live
  // stream's (its messages say which). Every API call and the socket carry it once it is known,
  // so an interface name that several hosts have means this host's.
  let host = fromUrl('host'); // an id (a name from a hand-typed URL is replaced by its id)
  let streamHost = null;      // the id in the live messages
  const hostId = () => host || streamHost;
  // The views that follow the interface on screen: history.js's and usage.js's.
  const follow = (name, h) => { nm.history.setIface(name, h); nm.usage.setIface(name, h); };
  let iface = fromUrl('iface'); // null: follow the interface with the newest sample
  let interfaces = [];        // /api/interfaces
  let ws = null;
  let wsState = 'connecting';
  let backoff = BACKOFF_MIN_MS;
  let retryAt = 0;
  let retryTimer = null;
  let lastMsgAt = 0;      // client clock: last message (or connection open)
  let lastSample = null;
  let lastSampleAt = 0;   // client clock: last sample received
  let needBackfill = true;
  let summaryTimer = null;
  let summarySeq = 0;
  let interfacesTimer = null;
  let interfacesSeq = 0;
  let interfacesAskedAt = 0;
  let interfacesAt = 0;       // client clock: last /api/interfaces answer
  let summaryAsked = null; // the host and interface of the last summary request

  // An API query about what is on screen: the host (once known), the interface, and extra.
  const onScreen = (path, name, extra) => nm.api.url(path, {host: hostId(), iface: name, ...extra});

  const getPath = (obj, path) => path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);

  // Fill every [data-field] under root from obj; the raw number goes to data-value.
  function fill(root, obj) {
    for (const el of root.querySelectorAll('[data-field]')) {
      const v = fmt.num(getPath(obj, el.dataset.field));
      const format = fmt.FORMATS[el.dataset.format] || String;
      el.textContent = v === null ? '—' : format(v);
      el.dataset.value = v === null ? '' : String(v);
      if (el.dataset.format === 'bytes') el.title = v === null ? '' : fmt.count(v) + ' bytes';
    }
    for (const el of root.querySelectorAll('[data-bar]')) {
      const v = fmt.num(getPath(obj, el.dataset.bar));
      el.style.width = (v === null ? 0 : Math.min(100, Math.max(0, v))) + '%';
    }
  }

  // ---------------------------------------------------------------- rx/tx table skeleton
  // One row per class of the API, in the server's order: the total first, the TCP events last.
  function buildRatesTable() {
    const tbody = $('rx-tx-table').tBodies[0];
    for (const cls of rules.classes) {
      const tr = document.createElement('tr');
      tr.dataset.class = cls;
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = rules.labels[cls];
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

  // ---------------------------------------------------------------- header
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

  function showIface(name) {
    const el = $('iface-name');
    el.dataset.iface = name || ''; // the name itself ("all"), whatever the heading says
    el.textContent = !name ? '—' : isTotal(name) ? 'all interfaces (host total)' : name;
    el.title = (name && membersHint(name)) || 'Interface';
    $('api-link').href = onScreen('/api/metrics/realtime', name);
    const select = $('iface-select');
    if (name && select.value !== name) select.value = name;
    showHost();
  }

  // With several hosts, the heading names the host too: "Now on web-1 · eth0".
  function showHost() {
    const el = $('host-name');
    const info = nm.fleet.find(hostId());
    const name = info ? nm.fleet.nameOf(info) : lastSample && lastSample.host_name;
    el.hidden = !nm.fleet.isFleet();
    el.dataset.host = hostId() || '';
    el.textContent = name ? String(name) : '—';
  }

  const infoOf = (name) => interfaces.find((i) => i.interface === name);
  const currentInfo = () => infoOf(iface || (lastSample && lastSample.interface));
  // Until /api/interfaces answers, the name alone says it (the kernel refuses "all" as a name).
  const isTotal = (name) => {
    const info = infoOf(name);
    return info ? Boolean(info.total) : name === HOST_TOTAL;
  };
  // The host total's tooltip: what its latest sample sums (bridge and bond ports whose master
  // is counted are not among them, so not listed); '' for an interface.
  const membersHint = (name) => {
    const members = (infoOf(name) || {}).members;
    return isTotal(name) && Array.isArray(members) && members.length ? 'sums ' + members.join(', ') : '';
  };

  // Stale: nothing for as many of the run's intervals (/api/interfaces; 1 s until it answers)
  // as the server counts a run live for.
  function staleMs() {
    const info = currentInfo();
    const interval = info && info.run ? fmt.num(info.run.interval) : null;
    return rules.live_intervals * (interval > 0 ? interval : 1) * 1000;
  }

  // Sampler pill: /api/interfaces says running/stale/stopped; the live stream says whether
  // samples still arrive. Mode and egress come from the interface's latest run.
  function renderSampler(now) {
    const el = $('sampler-status');
    const info = currentInfo();
    let state;
    let text;
    if (!lastSample && !info) {
      state = 'unknown';
      text = 'no samples yet';
    } else {
      // Whichever is newer: the last live message or the last /api/interfaces answer.
      const liveNewer = lastSample && (!info || lastSampleAt >= interfacesAt);
      let serverSays = info ? info.status : 'stale';
      if (liveNewer && lastSample.sampler_running) serverSays = 'running';
      else if (liveNewer && serverSays === 'running') serverSays = 'stale';
      const flowing = lastSample && now - lastSampleAt <= staleMs();
      if (serverSays === 'running' && (flowing || !lastSample)) {
        state = 'running';
        text = 'sampler running';
      } else {
        state = serverSays === 'running' ? 'stale' : serverSays;
        const last = lastSample ? fmt.parseTs(lastSample.timestamp) : info && fmt.parseTs(info.last_sample);
        const what = state === 'stopped' ? 'sampler stopped' : 'sampler stale';
        text = `${what} — last sample ${fmt.clock(last)}`;
      }
    }
    el.dataset.state = state;
    el.textContent = text;

    const run = info && info.run;
    const mode = $('sampler-mode');
    const egress = $('sampler-egress');
    mode.hidden = egress.hidden = !run;
    if (run) {
      mode.dataset.mode = run.mode;
      mode.textContent = MODES[run.mode] || String(run.mode);
      egress.dataset.egress = run.egress ? 'on' : 'off';
      egress.textContent = run.egress ? 'egress on' : 'egress off';
    }
  }

  // Time-dependent parts of the header: sampler state, stale hint, reconnect countdown.
  function renderStatus() {
    const now = Date.now();
    const stale = wsState === 'live' && now - lastMsgAt > staleMs();
    body.dataset.stale = String(stale);
    const hint = $('stale-hint');
    hint.hidden = !stale;
    if (stale) hint.textContent = `stale — no data for ${Math.floor((now - lastMsgAt) / 1000)} s`;
    renderSampler(now);
    if (wsState === 'reconnecting') {
      const secs = Math.max(0, Math.ceil((retryAt - now) / 1000));
      setWsState('reconnecting', `reconnecting in ${secs} s`);
    }
  }

  // ---------------------------------------------------------------- samples
  function renderSample(msg) {
    lastSample = msg;
    lastSampleAt = Date.now();
    if (typeof msg.host === 'string' && msg.host && msg.host !== streamHost) learnHost(msg.host);
    body.dataset.hasData = 'true';
    body.dataset.tx = msg.tx == null ? 'off' : 'on';
    const name = typeof msg.interface === 'string' && msg.interface ? msg.interface : iface;
    showIface(name);
    labelOptions(); // the current entry's rate, once a second
    fill($('cards'), msg);
    fill($('rx-tx-table'), msg);
    fill($('totals-table'), msg);
    nm.flows.update(msg.flows);
    const when = fmt.parseTs(msg.timestamp);
    const last = $('last-update');
    last.textContent = fmt.dateTime(when);
    last.dateTime = typeof msg.timestamp === 'string' ? msg.timestamp : '';
    const nowTime = $('now-time');
    nowTime.textContent = fmt.clock(when);
    nowTime.dateTime = last.dateTime;
    body.dataset.lastTimestamp = last.dateTime;
    nm.live.push(msg);
    if (name) follow(name, hostId());
    if (name && summaryKey(name) !== summaryAsked) pollSummary();
    if (needBackfill && name) {
      needBackfill = false;
      backfill(name, msg.tx != null);
    }
    // The server's view of the sampler changed: ask /api/interfaces for the details.
    const info = currentInfo();
    if (!info || (info.status === 'running') !== Boolean(msg.sampler_running)) soonPollInterfaces();
    renderStatus();
  }

  // The last 5 minutes at one point a second, so the live charts start full.
  async function backfill(name, egress) {
    const since = new Date(Date.now() - 300 * 1000).toISOString();
    const fields = ['bandwidth_bps', 'packets_per_sec', ...nm.live.MIX.map((c) => c + '_bandwidth_bps')].join(',');
    const url = (dir) => onScreen('/api/metrics/history', name, {step: '1s', since, direction: dir, fields});
    const asked = hostId();
    try {
      const [rx, tx] = await Promise.all([getJson(url('rx')), egress ? getJson(url('tx')) : null]);
      if (name !== (iface || (lastSample && lastSample.interface)) || asked !== hostId()) return; // switched meanwhile
      if (!rx.resp.ok || (tx && !tx.resp.ok)) return; // the live points still come
      nm.live.backfill(rx.data.timestamps, rx.data.series, tx ? tx.data.series : null);
    } catch (err) {
      // Network trouble: the WebSocket shows it; the chart fills from live samples.
    }
  }

  // ---------------------------------------------------------------- WebSocket with back-off
  function wsUrl() {
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host +
      onScreen('/ws/metrics/', iface);
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (!('WebSocket' in window)) { setWsState('offline', 'offline — no WebSocket support'); return; }
    setWsState('connecting');
    let sock;
    try {
      sock = new WebSocket(wsUrl());
    } catch (err) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    needBackfill = true; // fill whatever was missed while disconnected
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
      try { msg = JSON.parse(ev.data); } catch (err) { return; }
      if (!msg || typeof msg !== 'object') return;
      if (msg.type === 'sample') {
        backoff = BACKOFF_MIN_MS; // success: reset the back-off
        showError(null);
        renderSample(msg);
      } else if (msg.type === 'alerts') {
        document.dispatchEvent(new CustomEvent('netmetrics:alerts', {detail: msg})); // alerts.js
      } else if (msg.type === 'error') {
        gotError = true;
        showError('Server: ' + (typeof msg.detail === 'string' ? msg.detail : describeError(msg.detail, 400, 'live data')));
      }
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      if (ev.code === NOT_LOGGED_IN) {
        setWsState('offline', 'logged out');
        location.assign(rules.login_url + '?' + new URLSearchParams({next: location.pathname + location.search}));
        return;
      }
      if (ev.code === NOT_ALLOWED) { setWsState('offline', 'not allowed'); return; }
      if (openedAt && !gotError && Date.now() - openedAt >= STABLE_MS) backoff = BACKOFF_MIN_MS;
      scheduleReconnect();
    };
  }

  function reconnectNow() {
    const old = ws;
    ws = null; // its close event is ignored
    if (old) old.close();
    backoff = BACKOFF_MIN_MS;
    connect();
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

  // ---------------------------------------------------------------- interfaces and selector
  // Status and rate of one entry: /api/interfaces' (polled), except that a live sample newer
  // than its poll's latest wins, so the entry on screen agrees with the cards every second.
  function entryState(name) {
    const info = infoOf(name);
    const state = {status: info ? info.status : null, bps: info ? fmt.num(info.bandwidth_bps) : null};
    if (lastSample && lastSample.interface === name && (!lastSample.host || lastSample.host === hostId())) {
      const live = fmt.parseTs(lastSample.timestamp);
      const polled = info && fmt.parseTs(info.last_sample);
      if (live && (!polled || live > polled)) {
        state.status = lastSample.sampler_running ? 'running' : 'stale';
        state.bps = fmt.num(lastSample.bandwidth_bps);
      }
    }
    return state;
  }

  // "all (host total) · 12.3 Mbit/s", "eth0 · 4.10 Mbit/s", "veth1 (stopped)": the rate while
  // the sampler runs, its status otherwise (an old rate would read as a current one).
  function optionLabel(name) {
    const {status, bps} = entryState(name);
    const total = isTotal(name);
    if (status && status !== 'running') {
      return total ? `${name} (host total, ${status})` : `${name} (${status})`;
    }
    const label = total ? `${name} (host total)` : name;
    return bps === null ? label : `${label} · ${fmt.bw(bps)}`;
  }

  // Labels change in place (textContent, only when they differ): the options, and so the
  // selection and an open drop-down, stay as they are.
  function labelOptions() {
    for (const o of $('iface-select').options) {
      const label = optionLabel(o.value);
      const title = membersHint(o.value);
      if (o.textContent !== label) o.textContent = label;
      if (o.title !== title) o.title = title;
    }
  }

  // The API's order: the host total first, then the interfaces by name.
  function renderInterfaces() {
    const select = $('iface-select');
    const names = interfaces.map((i) => i.interface);
    const current = iface || (lastSample && lastSample.interface) || null;
    if (current && !names.includes(current)) names.push(current);
    const same = select.options.length === names.length && names.every((n, i) => select.options[i].value === n);
    if (!same) {
      select.replaceChildren(...names.map((n) => {
        const o = document.createElement('option');
        o.value = n;
        o.textContent = n;
        return o;
      }));
    }
    labelOptions();
    showIface(current); // the heading's wording and tooltip may have waited for this answer
    $('iface-picker').hidden = names.length < 2;
    const info = currentInfo();
    if (info && info.run) nm.live.setInterval(info.run.interval);
    renderStatus();
  }

  // The host on screen's interfaces. Before it is known (no ?host=, no live message yet), every
  // host's are asked for, and those of the host with the newest sample kept: the one the
  // socket's first message will come from.
  function hostInterfaces(data, asked) {
    if (asked) return data;
    const when = (i) => (fmt.parseTs(i.last_sample) || new Date(0)).getTime();
    const newest = data.reduce((a, b) => (!a || when(b) > when(a) ? b : a), null);
    const shown = hostId() || (newest && newest.host);
    return data.filter((i) => !shown || i.host === shown);
  }

  async function pollInterfaces() {
    clearTimeout(interfacesTimer);
    interfacesTimer = setTimeout(pollInterfaces, INTERFACES_MS);
    if (document.hidden) return; // nobody reads the labels; visibilitychange polls on return
    const mine = ++interfacesSeq;
    interfacesAskedAt = Date.now();
    const asked = hostId();
    try {
      const {resp, data} = await getJson(onScreen('/api/interfaces', null));
      if (mine !== interfacesSeq || !resp.ok || !Array.isArray(data)) return;
      if (asked && asked !== hostId()) return; // another host meanwhile: its own poll follows
      interfaces = hostInterfaces(data, asked);
      interfacesAt = Date.now();
      renderInterfaces();
    } catch (err) {
      // The WebSocket state says the server is away; try again on the next round.
    }
  }

  // At most one extra poll every 2 s, however many messages ask for one.
  let soonTimer = null;
  function soonPollInterfaces() {
    if (soonTimer) return;
    const wait = Math.max(0, interfacesAskedAt + 2000 - Date.now());
    soonTimer = setTimeout(() => { soonTimer = null; pollInterfaces(); }, wait);
  }

  function switchIface(name, push) {
    if (!name || name === iface) return;
    iface = name;
    if (push) {
      const url = new URL(location.href);
      // With several hosts, the URL names the host too: a reload shows the same one.
      if (!host && streamHost && nm.fleet.isFleet()) host = streamHost;
      if (host) url.searchParams.set('host', host);
      url.searchParams.set('iface', name);
      window.history.pushState({host, iface: name}, '', url);
    }
    applyIface();
  }

  function applyIface() {
    lastSample = null;
    lastSampleAt = 0;
    showIface(iface);
    fill($('cards'), {});
    fill($('rx-tx-table'), {});
    fill($('totals-table'), {});
    nm.flows.reset();
    nm.live.reset();
    if (iface) follow(iface, hostId());
    renderInterfaces();
    reconnectNow();
    pollSummary();
  }

  // ---------------------------------------------------------------- hosts
  // Another host: nothing on screen is its, so everything starts again, on the interface its
  // samples speak for (the host total where there is one) unless the URL names one.
  function applyHost(id, name) {
    host = id;
    streamHost = null;
    iface = name;
    interfaces = [];
    summaryAsked = null;
    // A host without samples yet: the page says so, instead of the last host's charts.
    const info = nm.fleet.find(id);
    if (info && info.status === 'idle') body.dataset.hasData = 'false';
    nm.fleet.render();
    applyIface();
    pollInterfaces();
  }

  function switchHost(id, push) {
    if (!id) return;
    if (id === hostId()) {
      // Already on screen (the live stream's): now chosen, and kept in the URL.
      if (host !== id && push) {
        host = id;
        const url = new URL(location.href);
        url.searchParams.set('host', id);
        window.history.pushState({host: id, iface}, '', url);
        nm.fleet.render();
      }
      return;
    }
    if (push) {
      const url = new URL(location.href);
      url.searchParams.set('host', id);
      url.searchParams.delete('iface');
      window.history.pushState({host: id, iface: null}, '', url);
    }
    applyHost(id, null);
  }

  // The URL says the host by its id from now on (it may have said its name).
  function replaceHostInUrl() {
    const url = new URL(location.href);
    if (host && url.searchParams.get('host') !== host) {
      url.searchParams.set('host', host);
      window.history.replaceState({host, iface}, '', url);
    }
  }

  // The live stream said which host it is (on connect, or a chosen host's id for its name).
  function learnHost(id) {
    streamHost = id;
    if (host && host !== id) {
      host = id;
      replaceHostInUrl();
    }
    soonPollInterfaces();
    nm.fleet.render();
  }

  // /api/hosts answered: a host asked for by name now has its id.
  function hostsChanged() {
    const id = nm.fleet.resolve(host);
    if (id !== host) {
      host = id;
      replaceHostInUrl();
      soonPollInterfaces();
    }
    showHost();
  }

  $('iface-select').addEventListener('change', (ev) => switchIface(ev.target.value, true));
  window.addEventListener('popstate', () => {
    const wantHost = fromUrl('host');
    const name = fromUrl('iface');
    if (wantHost !== host) applyHost(wantHost, name);
    else if (name && name !== iface) { iface = name; applyIface(); }
  });

  // ---------------------------------------------------------------- run summary (polled)
  const summaryFor = () => iface || (lastSample && lastSample.interface) || null;
  const summaryKey = (name) => `${hostId() || ''} ${name}`;

  function summaryMessage(state, text) {
    $('summary').dataset.state = state;
    const msg = $('summary-msg');
    msg.hidden = !text;
    msg.textContent = text || '';
  }

  async function pollSummary() {
    clearTimeout(summaryTimer);
    summaryTimer = setTimeout(pollSummary, SUMMARY_MS);
    const name = summaryFor();
    if (!name || document.hidden) return;
    summaryAsked = summaryKey(name);
    const mine = ++summarySeq;
    const box = $('summary');
    try {
      const {resp, data} = await getJson(onScreen('/api/stats/summary', name));
      if (mine !== summarySeq) return; // a newer request is in flight
      box.dataset.iface = name;
      if (resp.ok && data && typeof data === 'object') {
        fill(box, data);
        summaryMessage('ok', null);
      } else {
        fill(box, {});
        summaryMessage('error', describeError(data, resp.status, 'summary'));
      }
    } catch (err) {
      if (mine !== summarySeq) return;
      summaryMessage('error', 'summary unavailable (network error)');
    }
  }

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) { pollSummary(); pollInterfaces(); }
  });

  // ---------------------------------------------------------------- start
  try { $('tz-name').textContent = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local'; } catch (err) { /* old browser */ }
  buildRatesTable();
  nm.fleet.start({period: INTERFACES_MS, current: hostId, choose: (id) => switchHost(id, true), changed: hostsChanged});
  showIface(iface);
  // Without ?host=, the first live message says the host, and the history waits for it: an
  // interface name alone may be another host's.
  if (iface && host) follow(iface, host);
  connect();
  pollInterfaces();
  pollSummary();
  setInterval(() => { renderStatus(); nm.live.tick(); }, 1000);
})();
