// Qingling zero-out board (清零看板). Vanilla JavaScript, standard browser APIs only (fetch,
// EventSource, <dialog>, SVG); no library, no build step. Every figure comes from the API under
// the signed-in identity; nothing is shown without a session.
'use strict';

(() => {
  const SVGNS = 'http://www.w3.org/2000/svg';
  const TZ = 'Asia/Shanghai';
  const CHART_DAYS = 90;
  const LIST_LIMIT = 50;

  // Yunnan's 16 prefectures on a rough geographic grid [column, row], with short names.
  // Regions not listed here (another province) are laid out in a plain grid by code.
  const PREFECTURE_TILES = {
    '533400': [1, 0, '迪庆', 'Diqing'],
    '533300': [0, 1, '怒江', 'Nujiang'],
    '530700': [2, 1, '丽江', 'Lijiang'],
    '530600': [5, 1, '昭通', 'Zhaotong'],
    '530500': [1, 2, '保山', 'Baoshan'],
    '532900': [2, 2, '大理', 'Dali'],
    '532300': [3, 2, '楚雄', 'Chuxiong'],
    '530100': [4, 2, '昆明', 'Kunming'],
    '530300': [5, 2, '曲靖', 'Qujing'],
    '533100': [0, 3, '德宏', 'Dehong'],
    '530900': [2, 3, '临沧', 'Lincang'],
    '530400': [4, 3, '玉溪', 'Yuxi'],
    '530800': [3, 4, '普洱', "Pu'er"],
    '532500': [4, 4, '红河', 'Honghe'],
    '532600': [5, 4, '文山', 'Wenshan'],
    '532800': [3, 5, '西双版纳', 'Xishuangbanna'],
  };
  const PROVINCE_EN = { '530000': 'Yunnan' };

  const STATUS = {
    reported: ['已登记', 'reported'], planned: ['已定方案', 'planned'], rectifying: ['整改中', 'rectifying'],
    awaiting_verification: ['待验收', 'awaiting verification'], cleared: ['已销号', 'cleared'], withdrawn: ['已撤销', 'withdrawn'],
  };
  const EVENT = {
    'hazard.reported': ['发现登记', 'reported'], 'hazard.amended': ['更正', 'amended'], 'hazard.graded': ['定级', 'graded'],
    'hazard.listed': ['挂牌督办', 'listed for supervision'], 'rectification.planned': ['整改方案', 'plan'],
    'rectification.progressed': ['整改进展', 'progress'], 'rectification.extended': ['延期', 'deadline extended'],
    'rectification.completed': ['整改完成', 'completed'], 'verification.failed': ['验收不合格', 'verification failed'],
    'hazard.cleared': ['验收销号', 'cleared'], 'hazard.reopened': ['重新打开', 'reopened'], 'hazard.withdrawn': ['撤销', 'withdrawn'],
  };
  const GRADE = { major: ['重大', 'major'], general: ['一般', 'general'] };
  const LEVEL = { province: ['省级', 'province'], prefecture: ['市级', 'prefecture'], county: ['县级', 'county'] };

  const st = {
    cat: null, regions: new Map(), children: new Map(), sectors: new Map(),
    me: null, tabs: [], sector: null, root: null, mapRegion: null, sel: null,
    rows: new Map(), // key → row (what the board shows: the map region and its children)
    days: [], gen: 0, es: null, retry: 0, retryTimer: 0, refreshTimer: 0, narrow: null, mapKey: '',
    asOf: '', lastFeed: 0, flash: new Map(), // region → until when its tile is outlined
  };

  // ---------- small DOM helpers (text is always set as text, never parsed as HTML) ----------
  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    for (const k of kids.flat(Infinity)) if (k != null && k !== false) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  function sv(tag, attrs, ...kids) {
    const e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    for (const k of kids.flat(Infinity)) if (k != null && k !== false) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }
  const en = (t) => el('span', { lang: 'en', class: 'en' }, t);
  const bi = (pair) => [pair[0], ' ', en(pair[1])];

  // ---------- dates in Asia/Shanghai ----------
  const dateFmt = new Intl.DateTimeFormat('en-CA', { timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit' });
  const timeFmt = new Intl.DateTimeFormat('zh-CN', { timeZone: TZ, hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  const ymd = (d) => dateFmt.format(d);
  function addDays(s, n) {
    const [y, m, d] = s.split('-').map(Number);
    const t = new Date(Date.UTC(y, m - 1, d + n));
    return t.toISOString().slice(0, 10);
  }
  function quarter(today) {
    const [y, m] = today.split('-').map(Number);
    const q0 = Math.floor((m - 1) / 3) * 3 + 1;
    const pad = (n) => String(n).padStart(2, '0');
    const from = `${y}-${pad(q0)}-01`;
    const next = q0 === 10 ? `${y + 1}-01-01` : `${y}-${pad(q0 + 3)}-01`;
    return { from, to: addDays(next, -1), name: `${y} Q${(q0 + 2) / 3}` }; // the API's dates are inclusive
  }
  const fmtDate = (iso) => (iso ? ymd(new Date(iso)) : '—');
  const fmtTime = (iso) => (iso ? `${ymd(new Date(iso))} ${timeFmt.format(new Date(iso))}` : '—');

  // ---------- API ----------
  class ApiError extends Error {
    constructor(status, body) {
      const e = (body && body.error) || {};
      super(e.message || `HTTP ${status}`);
      this.status = status;
      this.code = e.code || '';
    }
  }
  async function api(path, opts = {}) {
    const r = await fetch(path, { credentials: 'same-origin', cache: 'no-store', ...opts,
      headers: { Accept: 'application/json', ...(opts.headers || {}) } });
    let body = null;
    if (r.status !== 204) body = await r.json().catch(() => null);
    if (!r.ok) {
      const err = new ApiError(r.status, body);
      if (r.status === 401 && st.me && !opts.noSignout) signedOut('会话已过期，请重新登录。 Session expired; sign in again.');
      throw err;
    }
    return body;
  }
  const qs = (o) => new URLSearchParams(Object.entries(o).filter(([, v]) => v != null && v !== '')).toString();
  const rowsOf = (b) => (Array.isArray(b) ? b : (b && (b.rows || b.items || b.status)) || []);
  const daysOf = (b) => (Array.isArray(b) ? b : (b && (b.days || b.items || b.daily)) || []);

  // ---------- catalog ----------
  async function loadCatalog() {
    const url = document.body.dataset.catalog || '/assets/catalog.json';
    const r = await fetch(url, { credentials: 'same-origin' });
    st.cat = await r.json();
    for (const s of st.cat.sectors) st.sectors.set(s.code, s);
    for (const g of st.cat.regions) {
      st.regions.set(g.code, g);
      if (g.parent) {
        if (!st.children.has(g.parent)) st.children.set(g.parent, []);
        st.children.get(g.parent).push(g.code);
      }
    }
  }
  function regionZh(code) { const g = st.regions.get(code); return g ? g.name_zh : code; }
  function regionEn(code) {
    if (PREFECTURE_TILES[code]) return PREFECTURE_TILES[code][3];
    return PROVINCE_EN[code] || code;
  }
  function sectorPair(code) {
    if (code === 'all') return ['全部行业', 'All sectors'];
    const s = st.sectors.get(code);
    return s ? [s.name_zh, s.name_en] : [code, code];
  }
  function pathTo(code) { // root … code
    const out = [];
    for (let c = code; c; c = (st.regions.get(c) || {}).parent) {
      out.unshift(c);
      if (c === st.root) break;
    }
    return out;
  }

  // ---------- sign-in ----------
  function showSignin(msg) {
    $('board').hidden = true;
    $('who').hidden = true;
    $('signin').hidden = false;
    const e = $('signin-error');
    e.hidden = !msg;
    e.textContent = msg || '';
    $('token').focus();
  }
  async function signIn(ev) {
    ev.preventDefault();
    const btn = $('signin-button');
    const token = $('token').value.trim();
    if (!token) return;
    btn.disabled = true;
    try {
      const res = await api('/v1/session', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token }), noSignout: true });
      $('token').value = '';
      await start(res.user);
    } catch (e) {
      showSignin(e.status === 401 ? '令牌无效。 Invalid token.' : `登录失败 Sign-in failed: ${e.message}`);
    } finally {
      btn.disabled = false;
    }
  }
  async function signOut() {
    try { await api('/v1/session', { method: 'DELETE', noSignout: true }); } catch (_) { /* signed out anyway */ }
    signedOut('');
  }
  function signedOut(msg) {
    closeFeed();
    st.me = null;
    st.rows.clear();
    st.gen++;
    // leave nothing of the last identity on the page
    for (const id of ['tabs', 'crumbs', 'headline', 'map', 'chart', 'hz-body']) $(id).replaceChildren();
    $('overdue').tBodies[0].replaceChildren();
    $('user').textContent = '';
    $('hz-title').replaceChildren('隐患 ', en('Hazard'));
    $('overdue-count').textContent = '';
    $('asof').textContent = '';
    if ($('hazard').open) $('hazard').close();
    showSignin(msg);
  }

  // ---------- board ----------
  function tabsFor(me) {
    const all = st.cat.sectors.map((s) => s.code);
    const mine = me.sectors || [];
    if (me.role === 'admin' || me.role === 'auditor' || mine.includes('all')) return ['all', ...all];
    return all.filter((c) => mine.includes(c));
  }
  async function start(me) {
    st.me = me;
    st.tabs = tabsFor(me);
    if (!st.tabs.length) {
      signedOut('');
      showSignin(`${me.id} 无可查看的行业。 ${me.id} may read no sector's status.`);
      return;
    }
    st.sector = st.tabs[0];
    st.root = me.jurisdiction && st.regions.has(me.jurisdiction) ? me.jurisdiction : st.cat.provinces[0];
    const g = st.regions.get(st.root);
    st.mapRegion = g && g.level === 'county' ? g.parent : st.root;
    if (!pathTo(st.mapRegion).includes(st.root)) st.mapRegion = st.root;
    st.sel = st.root;
    $('signin').hidden = true;
    $('board').hidden = false;
    $('who').hidden = false;
    $('user').textContent = `${me.id} · ${me.role}${me.jurisdiction ? ' · ' + regionZh(me.jurisdiction) : ''}`;
    renderTabs();
    openFeed();
    await refresh();
  }

  function renderTabs() {
    const list = $('tabs');
    list.replaceChildren(...st.tabs.map((code) => {
      const [zh, e] = sectorPair(code);
      const on = code === st.sector;
      return el('button', { type: 'button', role: 'tab', class: 'tab', id: `tab-${code}`, 'data-sector': code,
        'aria-selected': on ? 'true' : 'false', tabindex: on ? '0' : '-1', onclick: () => selectSector(code) }, zh, en(e));
    }));
  }
  function onTabKey(ev) {
    const i = st.tabs.indexOf(st.sector);
    let j = -1;
    if (ev.key === 'ArrowRight') j = (i + 1) % st.tabs.length;
    else if (ev.key === 'ArrowLeft') j = (i - 1 + st.tabs.length) % st.tabs.length;
    else if (ev.key === 'Home') j = 0;
    else if (ev.key === 'End') j = st.tabs.length - 1;
    if (j < 0) return;
    ev.preventDefault();
    selectSector(st.tabs[j]);
    $(`tab-${st.tabs[j]}`).focus();
  }
  function selectSector(code) {
    if (code === st.sector) return;
    st.sector = code;
    for (const b of $('tabs').children) {
      const on = b.dataset.sector === code;
      b.setAttribute('aria-selected', on ? 'true' : 'false');
      b.tabIndex = on ? 0 : -1;
    }
    st.rows.clear();
    refresh();
  }
  // select shows region code: a province or prefecture becomes the map (its children as tiles),
  // a county is picked on its prefecture's map.
  function select(code, fromTile) {
    const g = st.regions.get(code);
    if (!g) return;
    const kids = st.children.get(code) || [];
    st.mapRegion = code === st.root || kids.length ? code : g.parent || code;
    st.sel = code;
    st.focusMap = !!fromTile;
    refresh();
  }

  // The hz_status key of sector × region: <sector>.<province>[.<prefecture>[.<county>]].
  function statusKey(sector, region) {
    const p = [];
    for (let c = region; c; c = (st.regions.get(c) || {}).parent) p.unshift(c);
    return [sector, ...p].join('.');
  }

  // refresh reloads everything the board shows for the current selection.
  async function refresh() {
    clearTimeout(st.refreshTimer);
    st.refreshTimer = 0;
    if (!st.me) return;
    const gen = ++st.gen;
    const today = ymd(new Date());
    const q = quarter(today);
    const sector = st.sector, sel = st.sel, mapRegion = st.mapRegion;
    const notice = $('notice');
    try {
      const [status, daily, list] = await Promise.all([
        api('/v1/status?' + qs({ sector, region: mapRegion, from: q.from, to: q.to })),
        api('/v1/status/daily?' + qs({ sector, region: sel, from: addDays(today, -(CHART_DAYS - 1)), to: today })).catch((e) => ({ error: e })),
        api('/v1/hazards?' + qs({ sector, region: sel, overdue: 'true', status: 'open', limit: LIST_LIMIT })).catch((e) => ({ error: e })),
      ]);
      if (gen !== st.gen) return; // a newer refresh is under way
      st.rows.clear();
      for (const r of rowsOf(status)) if (r.sector === sector) st.rows.set(r.key, r);
      st.asOf = (status && status.as_of) || '';
      st.quarter = q;
      st.days = daily.error ? [] : daysOf(daily);
      notice.hidden = true;
      renderCrumbs();
      renderMap();
      renderHeadline();
      renderChart(daily.error);
      renderList(list);
    } catch (e) {
      if (gen !== st.gen || !st.me) return;
      notice.hidden = false;
      notice.textContent = `加载失败 Could not load: ${e.message}`;
    }
  }
  function scheduleRefresh(ms) {
    if (st.refreshTimer) return;
    st.refreshTimer = setTimeout(() => { st.refreshTimer = 0; refresh(); }, ms);
  }

  function renderCrumbs() {
    const p = pathTo(st.sel);
    const ol = el('ol', {}, p.map((c, i) => {
      const last = i === p.length - 1;
      const label = [regionZh(c), ' ', en(regionEn(c))];
      return el('li', {}, last ? el('span', { 'aria-current': 'location' }, label)
        : el('button', { type: 'button', onclick: () => select(c, true) }, label));
    }));
    $('crumbs').replaceChildren(ol);
    const asOf = st.asOf ? `截至 as of ${fmtTime(st.asOf)}` : '';
    $('asof').textContent = asOf;
    const kidsAreCounties = (st.regions.get(st.mapRegion) || {}).level === 'prefecture';
    $('map-title-zh').textContent = kidsAreCounties ? `${regionZh(st.mapRegion)} 各县（市、区）` : '各州（市）';
    $('map-title-en').textContent = kidsAreCounties ? `Counties of ${regionEn(st.mapRegion)}` : 'Prefectures';
  }

  // ---------- tile map ----------
  const TW = 136, TH = 104, GAP = 8;
  function verdict(r) {
    if (!r) return 'z-none';
    if (r.overdue > 0) return 'z-overdue';
    if (!r.zeroed || r.open_major > 0) return 'z-open';
    return 'z-zeroed';
  }
  function verdictText(r) {
    switch (verdict(r)) {
      case 'z-overdue': return '有逾期 overdue';
      case 'z-open': return '未清零 open major';
      case 'z-zeroed': return '已清零 zeroed';
    }
    return '无数据 no data';
  }
  function tilesFor(region) {
    const kids = (st.children.get(region) || []).slice();
    const codes = kids.length ? kids : [region];
    const geo = codes.every((c) => PREFECTURE_TILES[c]);
    const narrow = st.narrow;
    const cols = narrow ? 2 : geo ? 6 : Math.min(5, Math.max(3, Math.ceil(Math.sqrt(codes.length * 1.4))));
    return codes.map((c, i) => {
      if (geo && !narrow) return { code: c, col: PREFECTURE_TILES[c][0], row: PREFECTURE_TILES[c][1] };
      return { code: c, col: i % cols, row: Math.floor(i / cols) };
    });
  }
  // shortZh is a tile's name: the usual short form of an autonomous prefecture or county
  // (禄劝彝族苗族自治县 → 禄劝县); the full name is in the tile's label.
  function shortZh(code) {
    if (PREFECTURE_TILES[code]) return PREFECTURE_TILES[code][2];
    const n = regionZh(code);
    const m = /^(.{2}).+族自治(县|州)$/u.exec(n);
    return m ? m[1] + m[2] : n;
  }
  function renderMap() {
    const host = $('map');
    const w = host.clientWidth || 800;
    st.narrow = w < 560;
    const key = [st.sector, st.mapRegion, st.narrow].join('|');
    if (key !== st.mapKey || !host.firstChild) {
      const tiles = tilesFor(st.mapRegion);
      const cols = Math.max(...tiles.map((t) => t.col)) + 1, rows = Math.max(...tiles.map((t) => t.row)) + 1;
      const W = cols * (TW + GAP) - GAP, H = rows * (TH + GAP) - GAP;
      const svg = sv('svg', { viewBox: `0 0 ${W} ${H}`, role: 'group', 'aria-label': '地区图块 Region tiles' });
      for (const t of tiles) svg.append(tile(t));
      host.replaceChildren(svg);
      st.mapKey = key;
      if (st.focusMap && svg.querySelector('g.tile')) svg.querySelector('g.tile').focus(); // keyboard users land on the new tiles
    }
    st.focusMap = false;
    updateTiles();
  }
  function tile(t) {
    const x = t.col * (TW + GAP), y = t.row * (TH + GAP);
    const g = sv('g', { class: 'tile z-none', transform: `translate(${x},${y})`, tabindex: '0', role: 'button',
      'data-region': t.code, onclick: () => select(t.code, true),
      onkeydown: (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); select(t.code, true); } } },
    sv('title', {}),
    sv('rect', { class: 'bg', width: TW, height: TH, rx: 8 }),
    sv('text', { x: 10, y: 22, class: 'name' }, shortZh(t.code)),
    sv('text', { x: 10, y: 38, class: 'ename' }, regionEn(t.code)),
    sv('text', { x: 10, y: 59, class: 'nums' }, '未销号 ', sv('tspan', { class: 'n', 'data-count': 'open' }, '–'),
      '  重大 ', sv('tspan', { class: 'n', 'data-count': 'open_major' }, '–')),
    sv('text', { x: 10, y: 78, class: 'nums' }, '逾期 ', sv('tspan', { class: 'n', 'data-count': 'overdue' }, '–'),
      '  待验收 ', sv('tspan', { class: 'n', 'data-count': 'awaiting_verification' }, '–')),
    sv('text', { x: 10, y: 96, class: 'verdict' }, ''));
    return g;
  }
  function rowFor(region) { return st.rows.get(statusKey(st.sector, region)); }
  // updateTiles writes the rows into the tiles; with live set, a tile whose numbers changed is
  // outlined for a few seconds (what changed in the last moments).
  function updateTiles(live) {
    const now = Date.now();
    for (const g of $('map').querySelectorAll('g.tile')) {
      const code = g.dataset.region;
      const r = rowFor(code);
      let changed = false;
      for (const t of g.querySelectorAll('[data-count]')) {
        const v = r ? String(r[t.dataset.count] ?? '–') : '–';
        if (t.textContent !== v) { changed = changed || t.textContent !== '–'; t.textContent = v; }
      }
      if (live && changed) {
        st.flash.set(code, now + 3000);
        setTimeout(() => updateTiles(false), 3100);
      }
      const flash = (st.flash.get(code) || 0) > now ? ' flash' : '';
      g.setAttribute('class', `tile ${verdict(r)}${flash}`);
      g.setAttribute('aria-pressed', code === st.sel ? 'true' : 'false');
      g.querySelector('.verdict').textContent = verdictText(r);
      const label = `${regionZh(code)} ${regionEn(code)}: ` + (r
        ? `未销号 open ${r.open}, 重大 major ${r.open_major}, 逾期 overdue ${r.overdue}, 待验收 awaiting ${r.awaiting_verification}; ${verdictText(r)}`
        : '无数据 no data');
      g.setAttribute('aria-label', label);
      g.querySelector('title').textContent = label;
    }
  }

  // ---------- headline ----------
  function renderHeadline() {
    const r = rowFor(st.sel);
    const host = $('headline');
    if (!r) { host.replaceChildren(el('p', { class: 'muted' }, '无数据 No data')); return; }
    const p = r.period || {};
    const pct = p.dynamic_zero_rate == null ? '—' : `${(p.dynamic_zero_rate * 100).toFixed(1)}%`;
    const qn = st.quarter ? st.quarter.name : '';
    const cards = [
      ['open_major', ['重大隐患未清零', 'Open major'], r.open_major, `未销号合计 open ${r.open}`, r.open_major > 0 ? 'warn' : 'good'],
      ['overdue', ['逾期未整改', 'Overdue'], r.overdue, `其中重大 major ${r.overdue_major}`, r.overdue > 0 ? 'bad' : 'good'],
      ['awaiting_verification', ['待验收', 'Awaiting verification'], r.awaiting_verification, `超10天 over 10 days ${r.verification_overdue}`, r.verification_overdue > 0 ? 'warn' : ''],
      ['listed', ['挂牌督办', 'Listed'], r.listed, `逾期 overdue ${r.listed_overdue}`, r.listed_overdue > 0 ? 'bad' : ''],
      ['cleared_on_time', ['本季度按期销号', 'Cleared on time this quarter'], p.cleared_on_time ?? '—',
        `${qn} 发现 found ${p.found ?? '—'} · 销号 cleared ${p.cleared ?? '—'}`, ''],
      ['stock', ['存量 / 增量', 'Stock / increment'], `${r.stock} / ${r.increment}`, `存量重大 stock major ${r.stock_major}${r.stock_zeroed ? ' · 存量已清零 stock zeroed' : ''}`, r.stock_major > 0 ? 'warn' : 'good'],
      ['dynamic_zero_rate', ['动态清零率', 'Dynamic zero rate'], pct,
        p.major_due ? `按期 on time ${p.major_cleared_on_time} / 到期 due ${p.major_due}（${qn}）` : `${qn} 无到期重大隐患 none due`, ''],
    ];
    host.replaceChildren(...cards.map(([k, label, v, sub, cls]) => el('div', { class: `card ${cls}`, 'data-card': k },
      el('div', { class: 'label' }, label[0], en(label[1])),
      el('div', { class: 'value', 'data-value': k }, String(v)),
      el('div', { class: 'sub' }, sub))));
  }

  // ---------- chart ----------
  function renderChart(err) {
    const host = $('chart');
    if (err) { host.replaceChildren(el('p', { class: 'muted' }, `无每日数据 No daily figures: ${err.message}`)); return; }
    const days = st.days.slice();
    const live = rowFor(st.sel);
    if (days.length && live && days[days.length - 1].partial) days[days.length - 1] = { ...days[days.length - 1], open_major: live.open_major };
    if (!days.length) { host.replaceChildren(el('p', { class: 'muted' }, '无数据 No data')); return; }
    const W = 640, H = 250, L = 40, R = 14, T = 14, B = 30;
    const vals = days.map((d) => d.open_major || 0);
    const max = Math.max(1, ...vals);
    const step = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000].find((k) => Math.ceil(max / k) <= 5) || Math.ceil(max / 5);
    const top = Math.ceil(max / step) * step;
    const x = (i) => L + (days.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (days.length - 1));
    const y = (v) => T + (H - T - B) * (1 - v / top);
    const last = vals[vals.length - 1];
    const svg = sv('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': `重大隐患未清零每日数 open major per day ${days[0].date} – ${days[days.length - 1].date}; 最新 latest ${last}, 最高 max ${max}` });
    const ticks = [];
    for (let v = 0; v <= top; v += step) ticks.push(v);
    for (const v of ticks) {
      svg.append(sv('line', { class: 'gridline', x1: L, x2: W - R, y1: y(v), y2: y(v) }),
        sv('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, String(v)));
    }
    svg.append(sv('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
    for (const i of [0, Math.floor((days.length - 1) / 2), days.length - 1]) {
      svg.append(sv('text', { x: x(i), y: H - B + 18, 'text-anchor': i === 0 ? 'start' : i === days.length - 1 ? 'end' : 'middle' }, days[i].date.slice(5)));
    }
    const pts = vals.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    svg.append(sv('path', { class: 'area', d: `M${x(0).toFixed(1)},${y(0)} L${pts.join(' L')} L${x(vals.length - 1).toFixed(1)},${y(0)} Z` }));
    svg.append(sv('path', { class: 'line', d: `M${pts.join(' L')}` }));
    svg.append(sv('circle', { class: 'dot', cx: x(vals.length - 1), cy: y(last), r: 4 }));
    const bw = (W - L - R) / days.length;
    days.forEach((d, i) => svg.append(sv('rect', { class: 'hit', x: x(i) - bw / 2, y: T, width: bw, height: H - T - B },
      sv('title', {}, `${d.date}${d.partial ? ' (今日 today)' : ''}: 重大未清零 open major ${vals[i]}`))));
    host.replaceChildren(svg, el('p', { class: 'chart-note' },
      `最近 ${days.length} 天，每日日终状态；今日为实时数。 `, en(`Last ${days.length} days, status at each day's end; today is live.`)));
  }

  // ---------- overdue list ----------
  function renderList(res) {
    const body = $('overdue').tBodies[0];
    if (res.error) {
      body.replaceChildren(el('tr', {}, el('td', { colspan: 6, class: 'error' }, `加载失败 Could not load: ${res.error.message}`)));
      return;
    }
    const items = (res.items || []).slice().sort((a, b) => String(a.deadline).localeCompare(String(b.deadline)));
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.hazard : null;
    const now = Date.now();
    body.replaceChildren(...items.map((h) => {
      const days = h.deadline ? Math.floor((now - new Date(h.deadline).getTime()) / 864e5) : null;
      const county = regionZh(h.region), pref = h.prefecture && h.prefecture !== h.region ? regionZh(h.prefecture) : '';
      return el('tr', { 'data-hazard-row': h.id },
        el('td', {}, el('button', { type: 'button', class: 'open', 'data-hazard': h.id, onclick: (ev) => openHazard(h.id, ev.currentTarget) },
          h.site_name || h.id)),
        el('td', {}, pref ? `${pref} ${county}` : county),
        el('td', {}, bi(sectorPair(h.sector))),
        el('td', {}, el('span', { class: `badge ${h.grade}` }, bi(GRADE[h.grade] || [h.grade, h.grade])),
          h.listed ? [' ', el('span', { class: 'badge listed' }, '挂牌 ', el('span', { lang: 'en' }, 'listed'))] : null),
        el('td', {}, fmtDate(h.deadline), days != null && days >= 0 ? el('div', { class: 'muted' }, `逾期 ${days} 天 `, en(`${days} d overdue`)) : null),
        el('td', {}, bi(STATUS[h.status] || [h.status, h.status])));
    }));
    $('overdue-empty').hidden = items.length > 0;
    const r = rowFor(st.sel);
    const total = r ? r.overdue : items.length;
    $('overdue-count').textContent = res.next || total > items.length ? `（${items.length} / ${total}）` : `（${items.length}）`;
    if (focused) {
      const b = body.querySelector(`[data-hazard="${CSS.escape(focused)}"]`);
      if (b) b.focus();
    }
  }

  // ---------- hazard dialog: state, evidence, history ----------
  async function openHazard(id, opener) {
    const dlg = $('hazard'), body = $('hz-body');
    body.replaceChildren(el('p', { class: 'muted' }, '加载中 Loading…'));
    dlg.returnFocus = opener;
    if (!dlg.open) dlg.showModal();
    try {
      const [h, hist] = await Promise.all([api(`/v1/hazards/${encodeURIComponent(id)}`), api(`/v1/hazards/${encodeURIComponent(id)}/history`)]);
      renderHazard(h, (hist && hist.events) || []);
    } catch (e) {
      body.replaceChildren(el('p', { class: 'error' }, `加载失败 Could not load: ${e.message}`));
    }
  }
  function renderHazard(h, evs) {
    const d = h.details || {};
    $('hz-title').replaceChildren(h.site_name || '隐患', ' ', en('Hazard'));
    const facts = [
      [['编号', 'ID'], el('code', { class: 'hash' }, h.id)],
      [['地区', 'Region'], pathTo(h.region).map(regionZh).join(' ')],
      [['行业', 'Sector'], bi(sectorPair(h.sector))],
      [['等级', 'Grade'], [bi(GRADE[h.grade] || [h.grade, h.grade]), d.criterion_zh ? ` · ${h.criterion} ${d.criterion_zh}` : '']],
      [['状态', 'Status'], [bi(STATUS[h.status] || [h.status, h.status]), h.overdue ? el('span', { class: 'badge major' }, ' 逾期 overdue') : null]],
      [['整改期限', 'Deadline'], fmtTime(h.deadline)],
      [['发现', 'Found'], fmtTime(h.found_at)],
      [['挂牌督办', 'Listed'], h.listed ? bi(LEVEL[h.list_level] || [h.list_level, h.list_level]) : '否 no'],
      [['描述', 'Description'], d.description || '—'],
    ];
    const dl = el('dl', { class: 'facts' }, facts.map(([k, v]) => [el('dt', {}, k[0], ' ', en(k[1])), el('dd', {}, v)]));
    // evidence: the report's and every step's, once each
    const seen = new Map();
    const addEv = (list) => { for (const e of list || []) if (e && e.sha256 && !seen.has(e.sha256)) seen.set(e.sha256, e); };
    addEv(d.evidence);
    for (const it of evs) addEv(it.event && it.event.data && it.event.data.evidence);
    const evList = seen.size ? el('ul', { class: 'evidence' }, [...seen.values()].map((e) => el('li', {},
      el('a', { href: `/v1/evidence/${encodeURIComponent(e.sha256)}`, download: e.name || e.sha256 }, e.name || e.sha256), ' ',
      el('code', { class: 'hash' }, e.sha256.slice(0, 16) + '…'))))
      : el('p', { class: 'muted' }, '无 None');
    const tl = el('ol', { class: 'timeline' }, evs.map((it) => {
      const data = (it.event && it.event.data) || {};
      const note = data.note || data.reason || data.measures || data.description || '';
      const extra = [];
      if (data.deadline) extra.push(`期限 deadline ${fmtDate(data.deadline)}`);
      if (data.percent != null) extra.push(`${data.percent}%`);
      if (data.grade) extra.push(`${(GRADE[data.grade] || [data.grade])[0]} ${data.grade}`);
      if (data.method) extra.push(`方式 method ${data.method}`);
      return el('li', {},
        el('strong', {}, bi(EVENT[it.type] || [it.type, it.type])), ' · ', `${it.actor}${it.actor_role ? ' (' + it.actor_role + ')' : ''}`,
        el('div', { class: 'when' }, `发生 occurred ${fmtTime(it.occurred_at)} · 记录 recorded ${fmtTime(it.recorded_at)} · seq ${it.seq}`),
        note || extra.length ? el('div', {}, [note, extra.join(' · ')].filter(Boolean).join(' — ')) : null);
    }));
    $('hz-body').replaceChildren(dl,
      el('h3', {}, '证据 ', en('Evidence')), evList,
      el('h3', {}, '处理记录 ', en('History')), tl);
  }

  // ---------- live feed ----------
  function setLive(on, text) {
    const l = $('live');
    l.className = `live ${on ? 'on' : 'off'}`;
    l.dataset.state = on ? 'live' : 'reconnecting';
    $('live-text').replaceChildren(...(on ? ['实时 ', el('span', { lang: 'en' }, 'live')] : text || ['重连中 ', el('span', { lang: 'en' }, 'reconnecting')]));
  }
  function closeFeed() {
    clearTimeout(st.retryTimer);
    if (st.es) { st.es.close(); st.es = null; }
  }
  function openFeed() {
    closeFeed();
    if (!st.me) return;
    setLive(false, ['连接中 ', el('span', { lang: 'en' }, 'connecting')]);
    const es = new EventSource('/v1/feed');
    st.es = es;
    let wasDown = false;
    es.onopen = () => {
      st.retry = 0;
      setLive(true);
      if (wasDown) refresh(); // catch up on anything missed while down
      wasDown = false;
    };
    es.onmessage = onFeed;
    es.addEventListener('status', onFeed);
    es.addEventListener('delete', onFeedDelete);
    es.onerror = async () => {
      wasDown = true;
      setLive(false);
      if (es.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself, resuming from Last-Event-ID
      es.close();
      try { await api('/v1/me'); } catch (_) { return; } // 401 signs out
      st.retry = Math.min(st.retry + 1, 6);
      st.retryTimer = setTimeout(openFeed, 500 * 2 ** st.retry);
    };
  }
  // Feed entries are hz_status values (a row with its seq and as_of); they are applied in
  // batches, so that the backlog of a (re)connection costs one repaint.
  let pending = [];
  let applyTimer = 0;
  function onFeed(ev) {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (_) { return; }
    st.lastFeed = Date.now();
    pending.push(msg);
    if (!applyTimer) applyTimer = setTimeout(applyFeed, 25);
  }
  function onFeedDelete() { scheduleRefresh(300); }
  function applyFeed() {
    applyTimer = 0;
    const batch = pending;
    pending = [];
    let touched = false, relevant = false;
    for (const r of batch) {
      if (!r || typeof r.key !== 'string') continue;
      if (!r.key.startsWith(st.sector + '.')) continue;
      relevant = true;
      const old = st.rows.get(r.key);
      if (old && typeof r.open === 'number' && (!old.seq || !r.seq || r.seq >= old.seq)) {
        st.rows.set(r.key, { ...old, ...r, period: old.period });
        if (r.as_of && (!st.asOf || r.as_of > st.asOf)) st.asOf = r.as_of;
        touched = true;
      }
    }
    if (touched) {
      updateTiles(true);
      renderHeadline();
      if (st.days.length) renderChart();
      $('asof').textContent = st.asOf ? `截至 as of ${fmtTime(st.asOf)}` : '';
    }
    if (relevant) scheduleRefresh(800); // the overdue list, the chart and the period figures follow shortly
  }

  // ---------- wiring ----------
  function wire() {
    $('signin-form').addEventListener('submit', signIn);
    $('signout').addEventListener('click', signOut);
    $('tabs').addEventListener('keydown', onTabKey);
    $('hz-close').addEventListener('click', () => $('hazard').close());
    $('hazard').addEventListener('close', () => { // back to the row that opened it, unless the user has moved on
      const f = $('hazard').returnFocus, a = document.activeElement;
      if (f && f.isConnected && (!a || a === document.body || $('hazard').contains(a))) f.focus();
    });
    $('hazard').addEventListener('click', (ev) => { if (ev.target === $('hazard')) $('hazard').close(); });
    new ResizeObserver(() => {
      const w = $('map').clientWidth;
      if (st.me && w && (w < 560) !== st.narrow) renderMap(); // switch between the geographic and the compact layout
    }).observe($('map'));
    document.addEventListener('visibilitychange', () => { if (!document.hidden && st.me) scheduleRefresh(50); });
  }

  async function boot() {
    wire();
    try {
      await loadCatalog();
    } catch (e) {
      showSignin(`无法加载目录 Could not load the catalog: ${e.message}`);
      return;
    }
    try {
      const me = await api('/v1/me', { noSignout: true });
      await start(me);
    } catch (e) {
      showSignin(e.status && e.status !== 401 ? `${e.message}` : '');
    }
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
