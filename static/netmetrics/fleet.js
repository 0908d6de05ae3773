// netmetrics: the fleet (window.netmetrics.fleet). /api/hosts, polled; the host selector and the
// fleet overview (every host's current rx and tx, busiest first), both shown only when more than
// one host writes here. The dashboard says which host is on screen (current) and what choosing
// one does (choose). Server strings are only ever written with textContent.
'use strict';

(() => {
  const nm = (window.netmetrics = window.netmetrics || {});
  const fmt = nm.fmt;
  const {rules, getJson} = nm.api;
  const $ = (id) => document.getElementById(id);
  const RUNNING = 'running';
  const DAY_MS = 86400 * 1000;

  let hosts = []; // /api/hosts
  let seq = 0;
  let timer = null;
  let period = 5000;
  let current = () => null; // the id of the host on screen, or null before it is known
  let choose = () => {};
  let changed = () => {};

  const find = (id) => hosts.find((h) => h.id === id) || null;
  const isFleet = () => hosts.length > 1;
  const rate = (v) => fmt.num(v);
  // A host's current rate, both directions; 0 without one (not running): such hosts go last.
  const totalOf = (h) => (rate(h.rx_bps) || 0) + (rate(h.tx_bps) || 0);
  const hasRate = (h) => rate(h.rx_bps) !== null || rate(h.tx_bps) !== null;

  // A host named in a URL (the API takes a name as well as an id): its id when exactly one
  // host has that name, else the name as it was.
  function resolve(idOrName) {
    if (!idOrName || find(idOrName)) return idOrName;
    const named = hosts.filter((h) => h.name === idOrName);
    return named.length === 1 ? named[0].id : idOrName;
  }

  // Two hosts of one name are told apart by the start of their ids.
  function nameOf(h) {
    const name = String(h.name);
    const twins = hosts.filter((o) => o.name === h.name).length > 1;
    return twins ? `${name} (${String(h.id).slice(0, 8)})` : name;
  }

  // "web-1 · 12.3 Mbit/s" while its sampler runs, "backup (stale)" otherwise: whatever the
  // status is called ("stopped", "idle", or a status added later), it is said as it is.
  function optionLabel(h) {
    const status = String(h.status);
    if (status !== RUNNING) return `${nameOf(h)} (${status})`;
    return hasRate(h) ? `${nameOf(h)} · ${fmt.bw(totalOf(h))}` : nameOf(h);
  }

  // Rewriting an unchanged text would replace its text node: skip it.
  function setText(el, text, title) {
    if (el.textContent !== text) el.textContent = text;
    if (title !== undefined && el.title !== title) el.title = title;
  }

  // ---------------------------------------------------------------- selector
  function renderSelect() {
    const select = $('host-select');
    const ids = hosts.map((h) => h.id);
    const same = select.options.length === ids.length && ids.every((id, i) => select.options[i].value === id);
    if (!same) {
      select.replaceChildren(...ids.map((id) => {
        const o = document.createElement('option');
        o.value = id;
        return o;
      }));
    }
    hosts.forEach((h, i) => setText(select.options[i], optionLabel(h), `id ${h.id}`));
    const want = current();
    const value = want && find(want) ? want : '';
    if (select.value !== value) select.value = value; // '': none selected until it is known
    $('host-picker').hidden = !isFleet();
  }

  // ---------------------------------------------------------------- overview
  const COLUMNS = ['rx', 'tx', 'all'];

  function newRow() {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'host-choice';
    th.append(button);
    const status = document.createElement('td');
    status.className = 'status';
    const pill = document.createElement('span');
    pill.className = 'pill';
    status.append(pill);
    tr.append(th, status);
    for (const dir of COLUMNS) {
      const td = document.createElement('td');
      Object.assign(td.dataset, {dir, value: ''});
      tr.append(td);
    }
    const ifaces = document.createElement('td');
    ifaces.className = 'ifaces';
    const last = document.createElement('td');
    last.className = 'last';
    last.append(document.createElement('time'));
    tr.append(ifaces, last);
    return tr;
  }

  function showRate(td, value, title) {
    setText(td, value === null ? '—' : fmt.bw(value), title);
    td.dataset.value = value === null ? '' : String(value);
  }

  function fillRow(tr, h) {
    const [th, status, rx, tx, all, ifaces, last] = tr.cells;
    const on = h.id === current();
    const statusText = String(h.status);
    tr.dataset.host = h.id;
    tr.dataset.status = statusText;
    tr.classList.toggle('inactive', statusText !== RUNNING);
    const button = th.firstElementChild;
    setText(button, nameOf(h), on ? 'On screen' : `Show ${nameOf(h)}`);
    if (on) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');
    const pill = status.firstElementChild;
    pill.dataset.state = statusText;
    setText(pill, statusText);
    const running = statusText === RUNNING;
    const rxBps = running ? rate(h.rx_bps) : null;
    const txBps = running ? rate(h.tx_bps) : null;
    showRate(rx, rxBps, '');
    showRate(tx, txBps, running && txBps === null ? 'egress not measured' : '');
    showRate(all, running && hasRate(h) ? totalOf(h) : null, '');
    // The interfaces it counts (the host total's rate speaks for them when there is one).
    const names = Array.isArray(h.interfaces) ? h.interfaces.map(String) : [];
    const own = names.filter((n) => n !== rules.host_total);
    const summed = own.length < names.length ? ' (rates: the host total)' : '';
    setText(ifaces, own.join(', ') || '—', names.length ? names.join(', ') + summed : '');
    const time = last.firstElementChild;
    const when = fmt.parseTs(h.last_sample);
    const text = !when ? '—' : Date.now() - when.getTime() < DAY_MS ? fmt.clock(when) : fmt.dateTime(when);
    setText(time, text, when ? fmt.dateTime(when) : '');
    time.dateTime = typeof h.last_sample === 'string' ? h.last_sample : '';
  }

  // Busiest first (the API's order too; kept for equal rates), hosts without a rate last.
  function sorted() {
    return hosts.slice().sort((a, b) => totalOf(b) - totalOf(a));
  }

  // The rows are reused in place: a page left open for days does not churn DOM nodes.
  function renderTable() {
    const tbody = $('fleet-table').tBodies[0];
    const rows = sorted();
    while (tbody.rows.length > rows.length) tbody.lastElementChild.remove();
    while (tbody.rows.length < rows.length) tbody.append(newRow());
    rows.forEach((h, i) => fillRow(tbody.rows[i], h));
    $('fleet').hidden = !isFleet();
  }

  function render() {
    renderSelect();
    renderTable();
  }

  // ---------------------------------------------------------------- polling
  async function poll() {
    clearTimeout(timer);
    timer = setTimeout(poll, period);
    if (document.hidden) return; // visibilitychange polls on return
    const mine = ++seq;
    try {
      const {resp, data} = await getJson('/api/hosts');
      if (mine !== seq || !resp.ok || !Array.isArray(data)) return;
      hosts = data.filter((h) => h && typeof h === 'object' && typeof h.id === 'string');
      changed();
      render();
    } catch (err) {
      // The WebSocket state says the server is away; try again on the next round.
    }
  }

  $('host-select').addEventListener('change', (ev) => { if (ev.target.value) choose(ev.target.value); });
  // A click anywhere on a host's row chooses it; its button is the way there by keyboard.
  $('fleet-table').tBodies[0].addEventListener('click', (ev) => {
    const tr = ev.target.closest('tr[data-host]');
    if (tr) choose(tr.dataset.host);
  });
  document.addEventListener('visibilitychange', () => { if (!document.hidden) poll(); });

  function start(options) {
    ({current, choose, changed} = options);
    period = options.period || period;
    poll();
  }

  nm.fleet = {
    start,
    render,
    poll,
    resolve,
    find,
    nameOf,
    isFleet,
    get hosts() { return hosts; },
  };
})();
