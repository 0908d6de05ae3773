// netmetrics: the top-talkers table (window.netmetrics.flows), in the spirit of iftop: the flows
// with the most traffic in the last 40 s, from the "flows" key of each live message. The rows
// (at most 20) are reused in place, so a page left open for days does not churn DOM nodes.
// Server strings are only ever written with textContent.
'use strict';

(() => {
  const nm = (window.netmetrics = window.netmetrics || {});
  const fmt = nm.fmt;
  const WINDOWS = ['2', '10', '40']; // seconds: the rate columns of each direction, in order
  const PROTOCOLS = {icmpv6: 'ICMPv6'}; // other names read well in upper case (tcp: TCP)
  const $ = (id) => document.getElementById(id);
  const panel = $('flows');
  const tbody = $('flows-table').tBodies[0];
  const MESSAGES = {
    waiting: $('flows-msg').textContent, // the page's own
    off: 'Flows are off for this sampler (--no-flows)',
    empty: 'No flows in the last 40 s',
  };

  // "10.0.0.1:22", "[2001:db8::5]:443", the host name instead of the address when known; no
  // port for protocols without ports (0).
  function endpoint(address, port, name) {
    const host = name || String(address);
    if (!port) return host;
    return !name && host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  }

  // The title keeps what a narrow cell cuts short, and the address behind a name.
  function showEndpoint(el, address, port, name) {
    const text = endpoint(address, port, name);
    setText(el, text, name ? `${text} (${address})` : text);
  }

  // Where most of the window's bytes went: towards the local side (received), away from it
  // (sent), or neither twice the other.
  function way(flow) {
    const rx = fmt.num(flow.rx_bytes) || 0;
    const tx = fmt.num(flow.tx_bytes) || 0;
    if (rx > 2 * tx) return {arrow: '←', dir: 'rx', title: 'mostly received'};
    if (tx > 2 * rx) return {arrow: '→', dir: 'tx', title: 'mostly sent'};
    return {arrow: '⇄', dir: 'both', title: 'both ways'};
  }

  // Rewriting an unchanged text would replace its text node: skip it.
  function setText(el, text, title) {
    if (el.textContent !== text) el.textContent = text;
    el.title = title;
  }

  function newRow() {
    const tr = document.createElement('tr');
    const [local, arrow, remote, protocol] = ['th', 'td', 'td', 'td'].map((tag) => document.createElement(tag));
    local.scope = 'row';
    local.className = remote.className = 'host';
    protocol.className = 'proto';
    tr.append(local, arrow, remote, protocol);
    for (const dir of ['rx', 'tx']) {
      for (const secs of WINDOWS) {
        const td = document.createElement('td');
        Object.assign(td.dataset, {dir, window: secs, value: ''});
        tr.append(td);
      }
    }
    return tr;
  }

  function fillRow(tr, flow) {
    const [local, arrow, remote, protocol, ...rates] = tr.cells;
    showEndpoint(local, flow.local, flow.local_port, flow.local_name);
    showEndpoint(remote, flow.remote, flow.remote_port, flow.remote_name);
    const w = way(flow);
    setText(arrow, w.arrow, w.title);
    arrow.className = 'dir ' + w.dir;
    const name = String(flow.protocol);
    setText(protocol, PROTOCOLS[name] || name.toUpperCase(), 'IP protocol ' + flow.protocol_number);
    for (const td of rates) {
      const i = WINDOWS.indexOf(td.dataset.window);
      const bps = fmt.num((flow[td.dataset.dir + '_bps'] || [])[i]);
      const pps = fmt.num((flow[td.dataset.dir + '_pps'] || [])[i]);
      setText(td, bps === null ? '—' : fmt.bw(bps), pps === null ? '' : fmt.pps(pps));
      td.dataset.value = bps === null ? '' : String(bps);
    }
  }

  function showRows(flows) {
    while (tbody.rows.length > flows.length) tbody.lastElementChild.remove();
    while (tbody.rows.length < flows.length) tbody.append(newRow());
    flows.forEach((flow, i) => fillRow(tbody.rows[i], flow));
  }

  function showState(state) {
    panel.dataset.state = state;
    const msg = $('flows-msg');
    msg.hidden = state === 'ok';
    setText(msg, MESSAGES[state] || '', '');
  }

  function showDropped(count) {
    const el = $('flows-dropped');
    el.dataset.dropped = String(count);
    el.hidden = count <= 0;
    const howMany = count === 1 ? '1 flow' : `${fmt.count(count)} flows`;
    setText(el, count <= 0 ? '' : `${howMany} dropped from the kernel's flow table in the last 40 s` +
      ' — the top list is incomplete; raise --flow-table', '');
  }

  // One live message's "flows". null (on a sample that a newer one, with the flows, follows at
  // once) changes nothing.
  function update(data) {
    if (data == null || typeof data !== 'object') return;
    const off = data.flow_table === 0;
    const flows = !off && Array.isArray(data.flows) ? data.flows : [];
    showRows(flows);
    showDropped(off ? 0 : fmt.num(data.dropped) || 0);
    showState(off ? 'off' : flows.length ? 'ok' : 'empty');
  }

  // Another interface: nothing is known about its flows until its first message.
  function reset() {
    showRows([]);
    showDropped(0);
    showState('waiting');
  }

  nm.flows = {update, reset};
})();
