'use strict';
/* The admin dashboard of transport-http (GET /dashboard) in headless Chromium against a real
 * arqonbusd: the page loads without console errors, a wrong key is refused, the right one shows
 * the bus, live numbers move when clients publish, and the page's actions (reload, a broken
 * reload, publish, history, channel members, disconnect) do what they say. Phone width too.
 *
 * Every wait is on what the page or the daemon shows (a text, an HTTP status, a process exit),
 * bounded by a timeout; nothing sleeps. Screenshots go to ARQ_BROWSER_OUT.
 *
 * Environment (set by tests/CMakeLists.txt): ARQ_ARQONBUSD, ARQ_PLUGIN_DIR, ARQ_CLI, ARQ_CHROMIUM,
 * ARQ_BROWSER_OUT, NODE_PATH (the build tree's node_modules); ARQ_TEST_SLOW scales timeouts. */
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { test } = require('node:test');
const { chromium } = require('playwright-core');

const env = (name) => {
    const v = process.env[name];
    if (!v) throw new Error(`${name} is not set`);
    return v;
};
const ARQONBUSD = env('ARQ_ARQONBUSD');
const PLUGIN_DIR = env('ARQ_PLUGIN_DIR');
const CLI = env('ARQ_CLI');
const CHROMIUM = env('ARQ_CHROMIUM');
const OUT = env('ARQ_BROWSER_OUT');
const SLOW = Number(process.env.ARQ_TEST_SLOW || 1);
const T = 10000 * SLOW; /* the bound of every wait */
const KEY = 'dashboard-test-key-0123456789abcdef';
const ROOM = 'lobby';
const CHANNEL = 'general';

/* --- the daemon ---------------------------------------------------------------------------- */

/* A loopback port nothing listens on right now. */
function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

/* The TCP listeners of `pid` as [{addr, port}], from /proc (sockets it holds open). */
function listeners(pid) {
    const inodes = new Set();
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
        let link;
        try {
            link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
            continue;
        }
        const m = /^socket:\[(\d+)\]$/.exec(link);
        if (m) inodes.add(m[1]);
    }
    const out = [];
    for (const line of fs.readFileSync(`/proc/${pid}/net/tcp`, 'utf8').split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9])) continue;
        const [hexAddr, hexPort] = f[1].split(':');
        const b = Buffer.from(hexAddr, 'hex').reverse(); /* little-endian on x86 */
        out.push({ addr: [...b].join('.'), port: parseInt(hexPort, 16) });
    }
    return out;
}

function until(what, check, timeout = T) {
    const end = Date.now() + timeout;
    return new Promise((resolve, reject) => {
        const step = async () => {
            let v;
            try {
                v = await check();
            } catch {
                v = undefined;
            }
            if (v) return resolve(v);
            if (Date.now() > end) return reject(new Error(`timed out waiting for ${what}`));
            setTimeout(step, 50);
        };
        step();
    });
}

/* A child process whose stdout is kept as lines; `exited` settles with its exit code. */
function run(file, args, opts = {}) {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    const proc = { child, lines: [], stderr: '', code: undefined };
    let partial = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
        partial += d;
        const parts = partial.split('\n');
        partial = parts.pop();
        proc.lines.push(...parts);
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => (proc.stderr += d));
    proc.exited = new Promise((resolve) =>
        child.on('exit', (code, signal) => {
            proc.code = code ?? 128 + os.constants.signals[signal];
            resolve(proc.code);
        })
    );
    return proc;
}

function withTimeout(promise, what, timeout = T) {
    let timer;
    return Promise.race([
        promise,
        new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeout);
        }),
    ]).finally(() => clearTimeout(timer));
}

/* --- the page ------------------------------------------------------------------------------ */

/* Wait until the text of `sel` (trimmed) matches `re`; the error names the text last seen. */
async function waitText(page, sel, re, timeout = T) {
    try {
        await page.waitForFunction(
            ([s, src, flags]) => {
                const e = document.querySelector(s);
                return !!e && new RegExp(src, flags).test(e.textContent.trim());
            },
            [sel, re.source, re.flags],
            { timeout, polling: 50 }
        );
    } catch (e) {
        const seen = await page
            .$eval(sel, (el) => el.textContent.trim())
            .catch(() => '(no such element)');
        throw new Error(`${sel}: expected ${re}, last seen ${JSON.stringify(seen)} (${e.message})`);
    }
    return (await page.textContent(sel)).trim();
}

/* Wait until the number `sel` shows satisfies `ok`. */
async function waitNumber(page, sel, what, ok, timeout = T) {
    const t = await waitText(page, sel, /\d/, timeout);
    const end = Date.now() + timeout;
    for (let text = t; ; text = (await page.textContent(sel)).trim()) {
        if (ok(parseFloat(text))) return parseFloat(text);
        if (Date.now() > end)
            throw new Error(`${sel}: expected ${what}, last seen ${JSON.stringify(text)}`);
        await page.waitForFunction(
            ([s, old]) => document.querySelector(s).textContent.trim() !== old,
            [sel, text],
            { timeout: Math.max(1, end - Date.now()), polling: 50 }
        ).catch(() => {});
    }
}

/* Submit a form with its submit button, as a user would. */
async function submit(page, form) {
    await page.click(`${form} :is(button:not([type]), button[type=submit], input[type=submit])`);
}

/* Visible text whose contrast with its background is below WCAG AA (4.5:1, 3:1 for large
 * text), as "tag#id "text" ratio". The background is the nearest opaque one behind it. */
function lowContrast(page) {
    return page.evaluate(() => {
        const parse = (c) => {
            const m = /^rgba?\(([^)]+)\)$/.exec(c);
            if (!m) return null;
            const [r, g, b, a = 1] = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
            return { r, g, b, a };
        };
        const lum = (c) => {
            const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
            return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
        };
        const background = (el) => {
            for (let e = el; e; e = e.parentElement) {
                const c = parse(getComputedStyle(e).backgroundColor);
                if (c && c.a > 0) return c;
            }
            return { r: 255, g: 255, b: 255, a: 1 };
        };
        const low = [];
        for (const el of document.querySelectorAll('body *')) {
            const text = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
            if (!text || !el.checkVisibility()) continue;
            const style = getComputedStyle(el);
            const bg = background(el);
            const fg = parse(style.color);
            if (!fg) continue;
            const mix = (k) => fg[k] * fg.a + bg[k] * (1 - fg.a);
            const [l1, l2] = [lum({ r: mix('r'), g: mix('g'), b: mix('b') }), lum(bg)];
            const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
            const size = parseFloat(style.fontSize);
            const large = size >= 24 || (parseInt(style.fontWeight, 10) >= 700 && size >= 18.66);
            if (ratio < (large ? 3 : 4.5)) {
                const name = el.tagName.toLowerCase() + (el.id ? `#${el.id}` : '');
                low.push(`${name} "${el.textContent.trim().slice(0, 40)}" ${ratio.toFixed(2)}`);
            }
        }
        return low;
    });
}

async function shot(page, name) {
    await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: true });
}

/* --- the test ------------------------------------------------------------------------------ */

test('admin dashboard in headless Chromium', { timeout: 120000 * SLOW }, async (t) => {
    fs.rmSync(OUT, { recursive: true, force: true }); /* no screenshot of an earlier run */
    fs.mkdirSync(OUT, { recursive: true });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'arq-dashboard-'));
    const ws = await freePort();
    const httpPort = await freePort();
    const write = (name, text) => fs.writeFileSync(path.join(dir, name), text);
    write('00-host.yaml', `host:\n  plugin_dir: ${PLUGIN_DIR}\n  log_level: debug\n`);
    write(
        '10-websocket.yaml',
        `plugins:\n  ws:\n    module: transport-websocket\n    config:\n` +
            `      host: 127.0.0.1\n      port: ${ws}\n`
    );
    write('20-commands.yaml', 'plugins:\n  builtin:\n    module: commands-builtin\n');
    write('30-storage.yaml', 'plugins:\n  history:\n    module: storage-memory\n');
    write(
        '40-http.yaml',
        `plugins:\n  http:\n    module: transport-http\n    config:\n` +
            `      host: 127.0.0.1\n      port: ${httpPort}\n      api_key: ${KEY}\n`
    );

    const logFd = fs.openSync(path.join(OUT, 'arqonbusd.out'), 'w');
    const daemon = spawn(ARQONBUSD, ['-c', dir], { stdio: ['ignore', logFd, logFd] });
    const daemonExit = new Promise((resolve) =>
        daemon.on('exit', (code, sig) => resolve(sig ? 128 + os.constants.signals[sig] : code))
    );
    const base = `http://127.0.0.1:${httpPort}`;
    const api = (p) => fetch(base + p, { headers: { Authorization: `Bearer ${KEY}` } });
    const cli = (...args) => run(CLI, ['-p', String(ws), ...args]);

    const children = [];
    let browser;
    let page;
    const consoleErrors = [];
    let ok = false;
    t.after(async () => {
        if (page && !ok) await shot(page, 'failure').catch(() => {});
        if (browser) await browser.close().catch(() => {});
        for (const c of children) if (c.code === undefined) c.child.kill('SIGKILL');
        if (daemon.exitCode === null) daemon.kill('SIGKILL');
        fs.closeSync(logFd);
        fs.rmSync(dir, { recursive: true, force: true });
    });

    /* ready, and listening on 127.0.0.1 only, where it was told */
    await until('/ready 200', async () => (await fetch(`${base}/ready`)).status === 200);
    assert.deepEqual(
        listeners(daemon.pid)
            .map((x) => `${x.addr}:${x.port}`)
            .sort(),
        [`127.0.0.1:${ws}`, `127.0.0.1:${httpPort}`].sort()
    );

    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        /* as root (CI) Chromium refuses to start with its sandbox */
        args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    /* Chromium itself reports every 4xx and 5xx response as a console error, also those the
     * page expects and handles: a step that provokes one says which ("401 /admin/session"). */
    const expectedRefusals = new Set();
    page.on('console', (m) => {
        if (m.type() !== 'error') return;
        const url = m.location().url || '';
        const status = /^Failed to load resource: .* status of (\d+)/.exec(m.text());
        if (status && url.startsWith(base)) {
            const pathname = new URL(url).pathname;
            if (expectedRefusals.has(`${status[1]} ${pathname}`)) return;
        }
        consoleErrors.push(`${m.text()} (${url})`);
    });
    page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
    /* what the page asked the server, by path, until a session is open */
    let beforeLogin = [];
    page.on('request', (r) => beforeLogin && beforeLogin.push(new URL(r.url()).pathname));
    const noConsoleErrors = () => assert.deepEqual(consoleErrors, [], 'console errors');

    /* The steps build on each other: after a failed one the rest are skipped. */
    let failed = false;
    const step = (name, fn) =>
        t.test(name, failed ? { skip: 'an earlier step failed' } : {}, async () => {
            try {
                await fn();
            } catch (e) {
                failed = true;
                throw e;
            }
        });

    await step('the page loads, public, with a strict CSP and no console errors', async () => {
        const resp = await page.goto(`${base}/dashboard`);
        assert.equal(resp.status(), 200);
        assert.match(resp.headers()['content-type'] || '', /^text\/html/);
        assert.match(resp.headers()['content-security-policy'] || '', /default-src 'self'/);
        await page.waitForSelector('#login-form', { state: 'visible', timeout: T });
        await page.waitForSelector('#dashboard', { state: 'hidden', timeout: T });
        /* every input has a label */
        const unlabelled = await page.$$eval('input, select, textarea', (els) =>
            els
                .filter((e) => !['hidden', 'submit', 'button'].includes(e.type))
                .filter((e) => !e.labels.length && !e.getAttribute('aria-label'))
                .filter((e) => !e.getAttribute('aria-labelledby'))
                .map((e) => e.id || e.name || e.outerHTML)
        );
        assert.deepEqual(unlabelled, [], 'inputs without a label');
        assert.deepEqual(await lowContrast(page), [], 'text with too little contrast');
        await shot(page, '01-login');
        noConsoleErrors();
    });

    await step('a wrong key is refused and nothing of the bus is shown', async () => {
        expectedRefusals.add('401 /admin/session');
        await page.fill('#login-key', 'not-the-key');
        await submit(page, '#login-form');
        await waitText(page, '#login-error', /\S/);
        expectedRefusals.clear();
        await page.waitForSelector('#login-error', { state: 'visible', timeout: T });
        assert.equal(await page.isVisible('#dashboard'), false);
        /* nothing about the bus was asked for: only the shell and the session check */
        const asked = beforeLogin.filter((p) => !/^\/dashboard(\/|$)/.test(p));
        assert.deepEqual([...new Set(asked)], ['/admin/session']);
        beforeLogin = undefined;
        await shot(page, '02-refused');
        noConsoleErrors();
    });

    await step('the right key, typed and sent with the keyboard, shows the dashboard', async () => {
        await page.fill('#login-key', '');
        await page.focus('#login-key');
        await page.keyboard.type(KEY);
        await page.keyboard.press('Enter');
        await page.waitForSelector('#dashboard', { state: 'visible', timeout: T });
        await waitText(page, '#health', /^healthy$/);
        await waitText(page, '#generation', /^1$/);
        await waitText(page, '#storage', /healthy/);
        await waitNumber(page, '#clients', '0', (n) => n === 0);
        assert.equal(await page.isVisible('#cluster-nodes'), false, 'cluster nodes, no broker');
        /* the key is kept for the session only, and never written into the document */
        const where = await page.evaluate((k) => {
            const holding = (s) => Object.keys(s).filter((x) => s.getItem(x).includes(k));
            return {
                local: holding(localStorage),
                session: holding(sessionStorage),
                html: document.documentElement.outerHTML.includes(k),
            };
        }, KEY);
        assert.deepEqual(where.local, []);
        assert.equal(where.html, false);
        assert.ok(where.session.length > 0, 'the key is in sessionStorage');
        assert.deepEqual(await context.cookies(), []);
        noConsoleErrors();
    });

    await step('every control is reachable with the keyboard; text has contrast', async () => {
        const controls = ['reload-button', 'disconnect-client', 'publish-room', 'publish-channel',
            'publish-payload', 'history-room', 'history-channel', 'channel-room',
            'channel-channel'];
        const reached = new Set();
        await page.evaluate(() => document.activeElement && document.activeElement.blur());
        for (let i = 0; i < 80 && controls.some((c) => !reached.has(c)); i++) {
            await page.keyboard.press('Tab');
            reached.add(await page.evaluate(() => document.activeElement.id));
        }
        assert.deepEqual(controls.filter((c) => !reached.has(c)), [], 'not reached with Tab');
        assert.deepEqual(await lowContrast(page), [], 'text with too little contrast');
    });

    /* A client held on lobby/general by `sub`: its id from the welcome frame (-v). */
    const sub = cli('-v', '--no-reconnect', 'sub', ROOM, CHANNEL);
    children.push(sub);
    const frames = () =>
        sub.lines.map((l) => {
            try {
                return JSON.parse(l);
            } catch {
                return {};
            }
        });
    let clientId;

    await step('live numbers move when clients connect and publish', async () => {
        const joined = (f) => f.command === 'join_channel' && f.status === 'success';
        await until('the sub to join', () => frames().some(joined));
        clientId = frames().find((f) => f.payload && f.payload.client_id).payload.client_id;
        await waitNumber(page, '#clients', '1', (n) => n === 1);
        /* publish, one client after the other, until the page has seen a rate */
        let publishing = true;
        let sent = 0;
        const publisher = (async () => {
            while (publishing) {
                const p = cli('pub', ROOM, CHANNEL, JSON.stringify({ n: sent++ }));
                children.push(p);
                assert.equal(await withTimeout(p.exited, 'pub'), 0, p.stderr);
            }
        })();
        try {
            await waitNumber(page, '#msgs-in-rate', '> 0', (n) => n > 0);
            await waitNumber(page, '#msgs-out-rate', '> 0', (n) => n > 0);
            await page.waitForSelector(`#top-rooms tr[data-room="${ROOM}"]`, { timeout: T });
            await page.waitForSelector(`#top-channels tr[data-channel="${ROOM}/${CHANNEL}"]`, {
                timeout: T,
            });
        } finally {
            publishing = false;
            await publisher;
        }
        await shot(page, '03-live');
        noConsoleErrors();
    });

    await step('a publish from the page reaches the sub, and history shows it', async () => {
        const marker = `from-the-dashboard-${process.pid}`;
        await page.fill('#publish-room', ROOM);
        await page.fill('#publish-channel', CHANNEL);
        await page.fill('#publish-payload', JSON.stringify({ marker }));
        await submit(page, '#publish-form');
        await until('the message at the sub', () => sub.lines.some((l) => l.includes(marker)));
        await waitText(page, '#publish-result', /\S/);

        await page.fill('#history-room', ROOM);
        await page.fill('#history-channel', CHANNEL);
        await submit(page, '#history-form');
        await waitText(page, '#history-result', new RegExp(marker));

        await page.fill('#channel-room', ROOM);
        await page.fill('#channel-channel', CHANNEL);
        await submit(page, '#channel-form');
        await waitText(page, '#channel-members', new RegExp(clientId));
        noConsoleErrors();
    });

    await step('a reload from the page applies a configuration change', async () => {
        write('60-example.yaml', 'plugins:\n  example:\n    module: commands-example\n');
        await page.click('#reload-button');
        await waitText(page, '#reload-result', /^ok\b.*\b2$/i);
        await waitText(page, '#generation', /^2$/);
        const status = await (await api('/status')).json();
        assert.equal(status.generation, 2);
        assert.ok(status.plugins.some((p) => p.name === 'example'), 'the new instance runs');
        await shot(page, '04-reload-ok');
        noConsoleErrors();
    });

    await step('a broken configuration: the reload fails and shows file:line:col', async () => {
        write('61-bad.yaml', 'bus:\n  max_rooms: banana\n');
        expectedRefusals.add('500 /admin/reload');
        await page.click('#reload-button');
        const where = /61-bad\.yaml:2:14\b/;
        await waitText(page, '#reload-result', where);
        expectedRefusals.clear();
        await waitText(page, '#reloads', where);
        await page.waitForSelector('#reloads li', { timeout: T });
        await page.waitForSelector('#events li', { timeout: T }); /* the failure is an event */
        assert.equal((await page.textContent('#generation')).trim(), '2');
        fs.unlinkSync(path.join(dir, '61-bad.yaml'));
        await shot(page, '05-reload-failed');
        noConsoleErrors();
    });

    await step('a disconnect from the page removes the held client', async () => {
        assert.equal(sub.code, undefined, 'the sub is still connected');
        await page.fill('#disconnect-client', clientId);
        await submit(page, '#disconnect-form');
        assert.notEqual(await withTimeout(sub.exited, 'the sub to exit'), 0);
        await waitText(page, '#disconnect-result', /\S/);
        await waitNumber(page, '#clients', '0', (n) => n === 0);
        noConsoleErrors();
    });

    await step('phone width (390 px) renders without horizontal scroll', async () => {
        await page.setViewportSize({ width: 390, height: 844 });
        await page.waitForSelector('#dashboard', { state: 'visible', timeout: T });
        const w = await page.evaluate(() => ({
            scroll: document.documentElement.scrollWidth,
            client: document.documentElement.clientWidth,
        }));
        assert.ok(w.scroll <= w.client, `scrollWidth ${w.scroll} > clientWidth ${w.client}`);
        await shot(page, '06-phone');
        noConsoleErrors();
    });

    await step('the daemon stops cleanly', async () => {
        await browser.close();
        browser = undefined;
        daemon.kill('SIGTERM');
        assert.equal(await withTimeout(daemonExit, 'arqonbusd to exit'), 0);
    });
    ok = !failed;
});
