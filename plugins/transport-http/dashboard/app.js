// ArqonBus dashboard: plain JavaScript, no build step, no framework, nothing from other sites.
//
// The page holds no secret: the operator types the API key or an admin's token, which is kept
// in sessionStorage (this tab only) and sent as `Authorization: Bearer`. Nothing about the bus
// is shown before GET /admin/session has accepted it. Every value from the server is written
// with textContent, never as HTML.
'use strict';

(() => {
  const STORE = 'arqonbus.dashboard.credential';
  const POLL_MS = 1000;
  const SAMPLES = 120; // two minutes of one-second samples in the charts
  const MAX_ITEMS = 50; // in the reload and event lists
  const TOP_ROOMS = 10;

  // Counters whose increase is an event worth showing: name -> what it means.
  const EVENT_COUNTERS = {
    arqonbus_auth_failures_total: 'auth refusal',
    arqonbus_rate_limit_hits_total: 'rate limit hit',
    arqonbus_abuse_disconnects_total: 'abusive client disconnected',
    arqonbus_messages_rejected_total: 'message rejected',
    arqonbus_ws_refused_total: 'WebSocket request refused',
    arqonbus_slow_consumer_disconnects_total: 'slow consumer disconnected',
    arqonbus_reloads_total: 'reload failed',
    arqonbus_commands_total: 'command failed',
    arqonbus_storage_appends_total: 'storage append not stored',
  };
  // Which series of those counters are events (the others count successes).
  const EVENT_FILTER = {
    arqonbus_reloads_total: (l) => l.result === 'failure',
    arqonbus_commands_total: (l) => l.status === 'error',
    arqonbus_storage_appends_total: (l) => ['failed', 'unavailable', 'overflow'].includes(l.result),
  };

  const $ = (id) => document.getElementById(id);

  let credential = null;
  let session = 0; // bumped at every login and logout: a poll of an old session stops
  let prev = null; // the previous poll: {t, received, delivered, rooms: Map, events: Map}
  let lastReloads = null;
  const series = { clients: [], in: [], out: [] };

  // --- the API ------------------------------------------------------------------------------

  // {status, ok, data, text, error}: never throws. status 0: the server could not be reached.
  async function api(method, path, body) {
    const opts = { method, cache: 'no-store', headers: {} };
    if (credential) opts.headers.Authorization = 'Bearer ' + credential;
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      return { status: 0, ok: false, data: null, text: '', error: 'The server cannot be reached' };
    }
    let data = null;
    let text = '';
    try {
      if ((res.headers.get('Content-Type') || '').startsWith('application/json')) {
        data = await res.json();
      } else {
        text = await res.text();
      }
    } catch (e) {
      // A body cut short: the status says enough.
    }
    let error = null;
    if (!res.ok) {
      error = data && typeof data.error === 'string' ? data.error : `HTTP ${res.status}`;
      const details = data && data.payload && data.payload.errors;
      if (Array.isArray(details) && details.length) {
        error += ': ' + details.map((d) => (typeof d === 'string' ? d : JSON.stringify(d))).join('; ');
      }
    }
    return { status: res.status, ok: res.ok, data, text, error };
  }

  // --- small helpers ------------------------------------------------------------------------

  function clock() {
    return new Date().toLocaleTimeString([], { hour12: false });
  }

  function setText(id, text, state) {
    const el = $(id);
    el.textContent = text;
    if (state !== undefined) el.className = 'value state-' + state.replace(/\s+/g, '-');
  }

  function formatRate(r) {
    return (Math.round(r * 10) / 10).toString();
  }

  function li(text, cls) {
    const item = document.createElement('li');
    item.textContent = text;
    if (cls) item.className = cls;
    return item;
  }

  // Newest first, at most MAX_ITEMS.
  function prepend(list, item) {
    list.insertBefore(item, list.firstChild);
    while (list.children.length > MAX_ITEMS) list.removeChild(list.lastChild);
  }

  function push(arr, v) {
    arr.push(v);
    if (arr.length > SAMPLES) arr.shift();
  }

  // --- Prometheus text ----------------------------------------------------------------------

  // name -> [{labels, value}]
  function parseMetrics(text) {
    const out = new Map();
    const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
    const pair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (const row of text.split('\n')) {
      if (!row || row[0] === '#') continue;
      const m = line.exec(row);
      if (!m) continue;
      const labels = {};
      if (m[2]) {
        for (const p of m[2].matchAll(pair)) {
          labels[p[1]] = p[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
        }
      }
      if (!out.has(m[1])) out.set(m[1], []);
      out.get(m[1]).push({ labels, value: Number(m[3]) });
    }
    return out;
  }

  function total(metrics, name) {
    return (metrics.get(name) || []).reduce((s, x) => s + (Number.isFinite(x.value) ? x.value : 0), 0);
  }

  // --- the live view ------------------------------------------------------------------------

  function showHealth(r) {
    if (r.status === 0) return setText('health', 'down', 'down');
    const st = r.data && typeof r.data.status === 'string' ? r.data.status : r.ok ? 'healthy' : 'degraded';
    setText('health', st, st);
  }

  function showReady(r) {
    if (r.status === 0) return setText('ready', 'unknown', 'not ready');
    const ready = !!(r.data && r.data.ready);
    setText('ready', ready ? 'ready' : 'not ready', ready ? 'ready' : 'not ready');
  }

  function addReload(ok, generation, error) {
    const text = ok
      ? `${clock()} ok, generation ${generation}`
      : `${clock()} failed, generation ${generation} stays: ${error || 'no details'}`;
    prepend($('reloads'), li(text, ok ? 'ok' : 'bad'));
  }

  function showStatus(s) {
    $('node').textContent = s.node ? `node ${s.node}, version ${s.version}` : '';
    setText('generation', String(s.generation));
    setText('clients', String(s.clients));
    push(series.clients, Number(s.clients) || 0);
    const st = s.storage;
    if (st && typeof st === 'object') {
      setText('storage', st.detail ? `${st.health}: ${st.detail}` : st.health, st.health);
    } else {
      setText('storage', 'not configured', 'none');
    }
    const r = s.reloads;
    if (r) {
      if (lastReloads === null) {
        // What happened before the page opened: only the last reload is known.
        if (r.succeeded + r.failed > 0) addReload(r.last_ok, s.generation, r.last_error);
      } else {
        const okNew = r.succeeded - lastReloads.succeeded;
        const failedNew = r.failed - lastReloads.failed;
        // Both in one second: the last one (last_ok) goes on top.
        if (okNew > 0 && !r.last_ok) addReload(true, s.generation);
        if (failedNew > 0) addReload(false, s.generation, r.last_error);
        if (okNew > 0 && r.last_ok) addReload(true, s.generation);
      }
      lastReloads = r;
    }
    showCluster(s.cluster);
  }

  // The nodes, only when a broker is configured: without one, #cluster-nodes does not exist.
  function showCluster(cluster) {
    const section = $('cluster');
    let list = $('cluster-nodes');
    if (!cluster || !Array.isArray(cluster.nodes)) {
      if (list) list.remove();
      section.hidden = true;
      return;
    }
    if (!list) {
      list = document.createElement('ul');
      list.id = 'cluster-nodes';
      list.className = 'list';
      section.appendChild(list);
    }
    section.hidden = false;
    list.replaceChildren(
      ...cluster.nodes.map((n) => {
        const self = n.node === cluster.node ? ' (this node)' : '';
        return li(`${n.node}${self}: ${n.clients} clients`);
      })
    );
  }

  function showRooms(rooms, dt) {
    const rows = rooms.map((r) => {
      const before = prev && prev.rooms.get(r.room);
      const msgs = typeof r.messages === 'number' ? r.messages : null;
      const rate = msgs !== null && before !== undefined && dt > 0 ? Math.max(0, msgs - before) / dt : 0;
      return { ...r, msgs, rate };
    });
    rows.sort(
      (a, b) =>
        b.rate - a.rate || (b.msgs || 0) - (a.msgs || 0) || b.members - a.members || (a.room < b.room ? -1 : 1)
    );
    $('top-rooms').replaceChildren(
      ...rows.slice(0, TOP_ROOMS).map((r) =>
        tableRow([r.room, formatRate(r.rate), r.msgs === null ? '–' : String(r.msgs), String(r.members), String(r.channels)], {
          room: r.room,
        })
      )
    );
    return new Map(rows.filter((r) => r.msgs !== null).map((r) => [r.room, r.msgs]));
  }

  // One table row: a header cell, then numbers; `data` becomes its data-* attributes.
  function tableRow(cells, data) {
    const tr = document.createElement('tr');
    Object.assign(tr.dataset, data);
    cells.forEach((c, i) => {
      const td = document.createElement(i === 0 ? 'th' : 'td');
      if (i === 0) td.scope = 'row';
      else td.className = 'num';
      td.textContent = c;
      tr.appendChild(td);
    });
    return tr;
  }

  // The busiest channels, among those of the busiest rooms that have channels.
  async function showChannels(rooms, dt) {
    const busiest = rooms
      .filter((r) => r.channels > 0)
      .sort((a, b) => (b.messages || 0) - (a.messages || 0))
      .slice(0, TOP_ROOMS);
    const answers = await Promise.all(busiest.map((r) => api('GET', `/rooms/${encodeURIComponent(r.room)}/channels`)));
    const rows = [];
    for (const res of answers) {
      if (!res.ok || !res.data || !Array.isArray(res.data.channels)) continue;
      for (const c of res.data.channels) {
        const key = `${c.room}/${c.channel}`;
        const msgs = typeof c.messages === 'number' ? c.messages : 0;
        const before = prev && prev.channels.get(key);
        const rate = before !== undefined && dt > 0 ? Math.max(0, msgs - before) / dt : 0;
        rows.push({ key, msgs, rate, members: c.members });
      }
    }
    rows.sort((a, b) => b.rate - a.rate || b.msgs - a.msgs || (a.key < b.key ? -1 : 1));
    $('top-channels').replaceChildren(
      ...rows.slice(0, TOP_ROOMS).map((r) => tableRow([r.key, formatRate(r.rate), String(r.msgs), String(r.members)], { channel: r.key }))
    );
    return new Map(rows.map((r) => [r.key, r.msgs]));
  }

  // The event counters' series, by name and labels.
  function eventCounters(metrics) {
    const out = new Map();
    for (const name of Object.keys(EVENT_COUNTERS)) {
      for (const s of metrics.get(name) || []) {
        const keep = EVENT_FILTER[name];
        if (keep && !keep(s.labels)) continue;
        out.set(name + JSON.stringify(s.labels), { name, labels: s.labels, value: s.value });
      }
    }
    return out;
  }

  function showEvents(now) {
    if (!prev) return;
    for (const [key, s] of now) {
      const before = prev.events.get(key);
      const n = s.value - (before ? before.value : 0);
      if (!(n > 0)) continue;
      const labels = Object.entries(s.labels)
        .filter(([k]) => k !== 'instance')
        .map(([k, v]) => `${k}=${v}`)
        .join(', ');
      const what = EVENT_COUNTERS[s.name] + (labels ? ` (${labels})` : '');
      prepend($('events'), li(`${clock()} ${what}: ${n}`, 'bad'));
    }
  }

  function chart(canvas, lines, colours) {
    const ratio = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const h = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const g = canvas.getContext('2d');
    if (!g) return;
    g.clearRect(0, 0, w, h);
    const max = Math.max(1, ...lines.flat());
    const pad = 18 * ratio;
    g.strokeStyle = '#c9ced6';
    g.lineWidth = ratio;
    g.beginPath();
    g.moveTo(0, h - 1);
    g.lineTo(w, h - 1);
    g.stroke();
    g.fillStyle = '#4a5360';
    g.font = `${12 * ratio}px system-ui, sans-serif`;
    g.fillText(formatRate(max), 4 * ratio, 12 * ratio);
    lines.forEach((data, i) => {
      if (data.length < 2) return;
      g.strokeStyle = colours[i];
      g.lineWidth = 2 * ratio;
      g.beginPath();
      data.forEach((v, j) => {
        const x = (w * (SAMPLES - data.length + j)) / (SAMPLES - 1);
        const y = h - 2 - ((h - pad) * v) / max;
        if (j === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      });
      g.stroke();
    });
  }

  async function poll(mine) {
    const [health, ready, status, metrics, rooms] = await Promise.all([
      api('GET', '/health'),
      api('GET', '/ready'),
      api('GET', '/status'),
      api('GET', '/metrics'),
      api('GET', '/rooms'),
    ]);
    if (mine !== session) return;
    const t = performance.now() / 1000;
    const dt = prev ? t - prev.t : 0;
    showHealth(health);
    showReady(ready);
    if (status.ok && status.data) showStatus(status.data);
    const next = { t, received: null, delivered: null, rooms: new Map(), channels: new Map(), events: new Map() };
    if (metrics.ok) {
      const m = parseMetrics(metrics.text);
      next.received = total(m, 'arqonbus_messages_received_total');
      next.delivered = total(m, 'arqonbus_messages_delivered_total');
      next.events = eventCounters(m);
      if (prev && prev.received !== null && dt > 0) {
        const rin = Math.max(0, next.received - prev.received) / dt;
        const rout = Math.max(0, next.delivered - prev.delivered) / dt;
        setText('msgs-in-rate', formatRate(rin));
        setText('msgs-out-rate', formatRate(rout));
        push(series.in, rin);
        push(series.out, rout);
      } else {
        setText('msgs-in-rate', '0');
        setText('msgs-out-rate', '0');
      }
      showEvents(next.events);
    }
    if (rooms.ok && rooms.data && Array.isArray(rooms.data.rooms)) {
      next.rooms = showRooms(rooms.data.rooms, dt);
      next.channels = await showChannels(rooms.data.rooms, dt);
      if (mine !== session) return;
    }
    prev = next;
    chart($('connections-chart'), [series.clients], ['#0b57d0']);
    chart($('rate-chart'), [series.in, series.out], ['#0b57d0', '#b3261e']);
    setTimeout(() => poll(mine).catch(() => {}), POLL_MS);
  }

  // --- logging in and out -------------------------------------------------------------------

  function showLogin(message) {
    session++;
    credential = null;
    $('dashboard').hidden = true;
    $('logout-button').hidden = true;
    $('login').hidden = false;
    $('node').textContent = '';
    $('login-error').textContent = message || '';
    $('login-key').focus();
  }

  async function login(given) {
    credential = given;
    const r = await api('GET', '/admin/session');
    if (!r.ok) {
      sessionStorage.removeItem(STORE);
      showLogin(r.status === 0 ? r.error : `Refused: ${r.error}`);
      return;
    }
    sessionStorage.setItem(STORE, given);
    $('login-key').value = '';
    $('login-error').textContent = '';
    $('login').hidden = true;
    $('dashboard').hidden = false;
    $('logout-button').hidden = false;
    prev = null;
    lastReloads = null;
    series.clients.length = series.in.length = series.out.length = 0;
    $('reloads').replaceChildren();
    $('events').replaceChildren();
    const mine = ++session;
    poll(mine).catch(() => {});
  }

  // --- actions ------------------------------------------------------------------------------

  // Runs `fn` for a form's submit, with its button disabled meanwhile.
  function onSubmit(form, fn) {
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const button = form.querySelector('button[type="submit"]');
      if (button) button.disabled = true;
      Promise.resolve()
        .then(fn)
        .catch(() => {})
        .finally(() => {
          if (button) button.disabled = false;
        });
    });
  }

  function value(id) {
    return $(id).value.trim();
  }

  async function reload() {
    const button = $('reload-button');
    button.disabled = true;
    $('reload-result').textContent = 'reloading…';
    try {
      const r = await api('POST', '/admin/reload');
      $('reload-result').textContent = r.ok ? `ok, generation ${r.data.generation}` : r.error;
      $('reload-result').className = 'result ' + (r.ok ? '' : 'error');
    } finally {
      button.disabled = false;
    }
  }

  async function disconnect() {
    const id = value('disconnect-client');
    const r = await api('POST', '/admin/disconnect', { client_id: id });
    $('disconnect-result').textContent = r.ok ? `disconnected ${id}` : r.error;
  }

  async function publish() {
    const text = $('publish-payload').value;
    let payload;
    try {
      payload = JSON.parse(text);
    } catch (e) {
      payload = text; // not JSON: sent as a string
    }
    const msg = { room: value('publish-room'), payload };
    if (value('publish-channel')) msg.channel = value('publish-channel');
    const r = await api('POST', '/publish', msg);
    $('publish-result').textContent = r.ok
      ? `ok, id ${r.data.id}, delivered to ${r.data.delivered}` +
        (r.data.offset !== undefined ? `, offset ${r.data.offset}` : '')
      : r.error;
  }

  async function history() {
    const q = new URLSearchParams({ room: value('history-room'), limit: '50' });
    if (value('history-channel')) q.set('channel', value('history-channel'));
    const r = await api('GET', '/history?' + q);
    const list = $('history-result');
    if (!r.ok) {
      list.replaceChildren();
      $('history-status').textContent = r.error;
      return;
    }
    const entries = Array.isArray(r.data.entries) ? r.data.entries : [];
    $('history-status').textContent = `${entries.length} messages`;
    list.replaceChildren(
      ...entries.reverse().map((e) => {
        const env = e.envelope || {};
        const from = env.sender ? ` from ${env.sender}` : '';
        return li(`#${e.offset} ${e.stored_at}${from}: ${JSON.stringify(env.payload)}`, 'mono');
      })
    );
  }

  async function members() {
    const q = new URLSearchParams({ room: value('channel-room'), channel: value('channel-channel') });
    const r = await api('GET', '/admin/channel?' + q);
    const list = $('channel-members');
    if (!r.ok) {
      list.replaceChildren();
      $('channel-status').textContent = r.error;
      return;
    }
    const ids = Array.isArray(r.data.member_ids) ? r.data.member_ids : [];
    $('channel-status').textContent = `${ids.length} member${ids.length === 1 ? '' : 's'}`;
    list.replaceChildren(...ids.map((id) => li(id, 'mono')));
  }

  // --- start --------------------------------------------------------------------------------

  function start() {
    onSubmit($('login-form'), () => {
      const given = $('login-key').value.trim();
      return given ? login(given) : showLogin('Type the API key or a token');
    });
    $('logout-button').addEventListener('click', () => {
      sessionStorage.removeItem(STORE);
      showLogin('');
    });
    $('reload-button').addEventListener('click', () => {
      reload().catch(() => {});
    });
    onSubmit($('disconnect-form'), disconnect);
    onSubmit($('publish-form'), publish);
    onSubmit($('history-form'), history);
    onSubmit($('channel-form'), members);
    const kept = sessionStorage.getItem(STORE);
    if (kept) login(kept).catch(() => {});
    else $('login-key').focus();
  }

  start();
})();
