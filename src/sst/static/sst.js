/*! sst.js: the browser tag of sst. API and options: docs/browser.md */
(function (w, d) {
  "use strict";
  var VERSION = "1.0.0";
  var AD_COOKIES = ["_fbp", "_fbc", "_ga", "_ttp", "_scid", "_rdt_uuid", "_epik",
    "li_fat_id", "_uetmsclkid", "_uetvid", "_twclid"];
  var me = d.currentScript;
  var pre = w.sst && !w.sst.loaded ? w.sst : {}; // the inline init: {config, q}
  var cfg = pre.config || {};
  function opt(name, attr) {
    var v = cfg[name];
    if (v == null && me) v = me.getAttribute("data-" + attr);
    return v == null ? "" : String(v);
  }
  var writeKey = opt("writeKey", "write-key");
  var host = opt("apiHost", "api-host") || (me && me.src ? new URL(me.src, d.baseURI).origin : "");
  if (host && !/^https?:\/\//.test(host)) host = "https://" + host;
  host = host.replace(/\/+$/, "");
  var consentGlobal = opt("consentGlobal", "consent-global") || "sstConsent";
  var required = opt("requireConsent", "require-consent").split(",")
    .map(function (s) { return s.trim(); }).filter(Boolean);

  function uuid() {
    var c = w.crypto;
    if (c.randomUUID) return c.randomUUID(); // secure contexts only; else RFC 4122 v4 by hand
    return "10000000-1000-4000-8000-100000000000".replace(/[018]/g, function (x) {
      return (x ^ (c.getRandomValues(new Uint8Array(1))[0] & (15 >> (x / 4)))).toString(16);
    });
  }

  // Segment-like consent: window.sstConsent = {categoryPreferences: {Advertising: true, ...}}
  function prefs() {
    var g = w[consentGlobal];
    return g && typeof g === "object" ? (g.categoryPreferences || g) : null;
  }
  function allowed() {
    var p = prefs();
    return !required.length || !!p && required.every(function (c) { return p[c] === true; });
  }

  function adCookies() {
    var out = {}, any = false;
    d.cookie.split(";").forEach(function (kv) {
      var i = kv.indexOf("="), k = kv.slice(0, i).trim();
      if (i > 0 && AD_COOKIES.indexOf(k) >= 0) {
        try { out[k] = decodeURIComponent(kv.slice(i + 1).trim()); any = true; } catch (e) { /**/ }
      }
    });
    return any ? out : null;
  }

  function pageInfo() {
    var l = w.location;
    return { url: l.href, path: l.pathname, search: l.search, referrer: d.referrer,
      title: d.title };
  }

  function message(type, fields) {
    var ctx = { page: pageInfo(), library: { name: "sst.js", version: VERSION },
      locale: navigator.language };
    var c = adCookies();
    if (c) ctx.cookies = c;
    fields.type = type;
    fields.messageId = uuid(); // the same on every retry: sst stores it once
    fields.timestamp = new Date().toISOString();
    fields.context = ctx;
    return fields;
  }

  // Until the first answer has set the cookie, later events wait for it: two requests
  // without a cookie would otherwise make two visitors.
  var settled = false, inFlight = false, waiting = [], held = [];

  function body(msg) {
    var p = prefs();
    if (p) msg.context.consent = { categoryPreferences: p };
    msg.sentAt = new Date().toISOString();
    msg.writeKey = writeKey;
    return JSON.stringify(msg);
  }

  function post(path, msg, attempt) {
    // A string body goes as text/plain: no CORS preflight.
    return fetch(host + path, { method: "POST", body: body(msg), credentials: "include",
      keepalive: true, mode: "cors" }).then(function (r) {
      if (r.status === 429 || r.status >= 500) throw r;
      if (!r.ok) r.text().then(function (t) { console.warn("sst:", r.status, t); });
      return r;
    }).catch(function (e) {
      var next = function () { post(path, msg, attempt + 1); };
      if (attempt < 3) setTimeout(next, 1000 << attempt); // 1, 2, 4 s; same messageId
      return e;
    });
  }

  function beacon(path, msg) {
    var data = body(msg);
    if (!(navigator.sendBeacon && navigator.sendBeacon(host + path, data))) post(path, msg, 3);
  }

  function deliver(path, msg, useBeacon) {
    if (!allowed()) { if (held.length < 100) held.push([path, msg]); return; }
    if (useBeacon || d.visibilityState === "hidden") return beacon(path, msg);
    if (settled) return post(path, msg, 0);
    if (inFlight) return waiting.push([path, msg]);
    inFlight = true;
    post(path, msg, 0).then(function () {
      settled = true;
      waiting.splice(0).forEach(function (x) { post(x[0], x[1], 0); });
    });
  }

  // The page is going away: what still waits goes by beacon, which outlives the page.
  function leaving() { waiting.splice(0).forEach(function (x) { beacon(x[0], x[1]); }); }
  d.addEventListener("visibilitychange", function () {
    if (d.visibilityState === "hidden") leaving();
  });
  w.addEventListener("pagehide", leaving);

  function isObj(x) { return x && typeof x === "object"; }

  var api = {
    loaded: true,
    version: VERSION,
    page: function (name, properties) {
      if (isObj(name)) { properties = name; name = null; }
      var props = pageInfo();
      for (var k in properties || {}) props[k] = properties[k];
      var m = message("page", { properties: props });
      if (name) m.name = name;
      deliver("/v1/page", m);
      return m.messageId;
    },
    track: function (event, properties, options) {
      var m = message("track", { event: String(event), properties: properties || {} });
      deliver("/v1/track", m, (options || {}).transport === "beacon");
      return m.messageId;
    },
    identify: function (userId, traits) {
      if (isObj(userId)) { traits = userId; userId = null; }
      var m = message("identify", { traits: traits || {} });
      if (userId) m.userId = String(userId);
      deliver("/v1/identify", m);
      return m.messageId;
    },
    consent: function (categoryPreferences) {
      w[consentGlobal] = { categoryPreferences: categoryPreferences || {} };
      if (allowed()) held.splice(0).forEach(function (x) { deliver(x[0], x[1]); });
    },
    verifyPhone: {
      send: function (phone) { return otp("/v1/otp/send", { phone: phone }); },
      verify: function (phone, code) { return otp("/v1/otp/verify", { phone: phone, code: code }); }
    }
  };

  // Resolves with the server's JSON answer plus ok, httpStatus and retryAfter (seconds,
  // null unless CORS exposes Retry-After); with no answer, error is "network_error".
  function otp(path, fields) {
    fields.writeKey = writeKey;
    // Without consent the code is still checked, but no cookie is read or set.
    return fetch(host + path, { method: "POST", body: JSON.stringify(fields), mode: "cors",
      credentials: allowed() ? "include" : "omit" }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        j = isObj(j) ? j : {};
        j.ok = r.ok;
        j.httpStatus = r.status;
        j.retryAfter = parseInt(r.headers.get("Retry-After"), 10) || null;
        return j;
      });
    }, function () {
      return { ok: false, httpStatus: 0, error: "network_error", message: "network error" };
    });
  }

  // Links marked data-sst-track="Event Name" are tracked by beacon as the page unloads.
  d.addEventListener("click", function (e) {
    var a = e.target && e.target.closest && e.target.closest("[data-sst-track]");
    if (a) api.track(a.getAttribute("data-sst-track"), { href: a.href || null },
      { transport: "beacon" });
  }, true);

  w.sst = api;
  if (!writeKey && w.console) console.warn("sst: no write key (data-write-key)");
  var auto = opt("autoPage", "auto-page") !== "false";
  var q = pre.q || [];
  if (auto && !q.some(function (c) { return c[0] === "page"; })) api.page();
  q.forEach(function (c) { api[c[0]].apply(api, c[1]); });
})(window, document);
