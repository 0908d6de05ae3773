// netmetrics: what the dashboard's scripts take from the server (window.netmetrics.api).
// `rules`: the classes, their labels, transports and applications, the application ports and the
// stale factor, rendered into the page (metrics/dashboard.py); `getJson`, `getData` and
// `describeError`: the one way the scripts fetch the API and say what went wrong; `url`: how
// they write its queries.
'use strict';

(() => {
  const nm = (window.netmetrics = window.netmetrics || {});

  const rules = JSON.parse(document.getElementById('dashboard-rules').textContent);

  // {resp, data}: data is null when the body is not JSON. Throws only on network errors.
  async function getJson(url) {
    const resp = await fetch(url, {headers: {Accept: 'application/json'}, cache: 'no-store', credentials: 'same-origin'});
    let data = null;
    try { data = await resp.json(); } catch (err) { data = null; }
    return {resp, data};
  }

  // The API's own words (DRF's detail, or "param: why" per parameter), else "<what> unavailable".
  function describeError(data, status, what) {
    if (data && typeof data.detail === 'string') return data.detail;
    if (data && typeof data === 'object') {
      const parts = Object.entries(data).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(' ') : String(v)}`);
      if (parts.length) return parts.join('; ');
    }
    return `${what} unavailable (HTTP ${status})`;
  }

  // The JSON object of a successful answer; otherwise throws an Error that describes it.
  async function getData(url, what) {
    const {resp, data} = await getJson(url);
    if (!resp.ok || !data || typeof data !== 'object') throw new Error(describeError(data, resp.status, what));
    return data;
  }

  // path?name=value&... of params in their order, leaving out those null, undefined or empty
  // (a host not yet known, no interface): the one way the scripts build an API query.
  function url(path, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v != null && v !== '') q.set(k, v);
    }
    return q.toString() ? `${path}?${q.toString()}` : path;
  }

  nm.api = {rules, getJson, getData, describeError, url};
})();
