// netmetrics: the open alerts as a banner at the top of the dashboard. The list comes from
// /api/alerts when the page loads, then from the live socket's "alerts" messages (dashboard.js
// passes them on as a 'netmetrics:alerts' event), sent whenever an alert opens or closes; it is
// fetched again every minute in case the socket was away when one did.
'use strict';

(() => {
  const nm = window.netmetrics;
  const banner = document.getElementById('alert-banner');
  if (!banner || !nm || !nm.api) return;
  const REFRESH_MS = 60000;

  const unit = {
    rx_bps: 'bw', tx_bps: 'bw', total_bps: 'bw', rx_pps: 'pps', tx_pps: 'pps', total_pps: 'pps',
  };

  function value(alert, v) {
    const format = unit[alert.metric];
    if (format) return nm.fmt[format](v);
    if (alert.metric === 'quota_percent') return v.toFixed(1) + ' %';
    return (Math.round(v * 100) / 100) + ' /s';
  }

  function item(alert) {
    const li = document.createElement('li');
    li.dataset.alert = String(alert.id);
    const since = nm.fmt.clock(nm.fmt.parseTs(alert.started_at));
    const what = alert.condition === 'above' ? 'peak' : 'lowest';
    li.textContent = `${alert.rule}: ${alert.metric} ${alert.condition} ${value(alert, alert.level)}` +
      `${alert.baseline ? ' × baseline' : ''} on ${alert.host} ${alert.interface} since ${since}` +
      ` (${value(alert, alert.value)} when it opened, ${what} ${value(alert, alert.peak)})`;
    return li;
  }

  function show(alerts) {
    banner.replaceChildren();
    if (!alerts.length) { banner.hidden = true; return; }
    const title = document.createElement('strong');
    title.textContent = alerts.length === 1 ? '1 alert open' : `${alerts.length} alerts open`;
    const list = document.createElement('ul');
    list.append(...alerts.map(item));
    banner.append(title, list);
    banner.hidden = false;
  }

  async function refresh() {
    try {
      show((await nm.api.getData('/api/alerts?limit=0', 'alerts')).open);
    } catch (err) {
      // The socket's state says the server is away; the next push or refresh shows the alerts.
    }
  }

  document.addEventListener('netmetrics:alerts', (ev) => show(ev.detail.alerts));
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
