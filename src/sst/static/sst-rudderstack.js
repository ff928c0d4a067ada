/* sst-rudderstack.js: sst's first-party visitor id for RudderStack's JS SDK v3.
 * sstRudderStack.load(writeKey, dataPlaneUrl, loadOptions[, RudderAnalytics]) takes the place
 * of rudderanalytics.load(...): it makes RudderStack's own call buffer (window.rudderanalytics,
 * as its snippet does), asks sst (one credentialed POST to /v1/visitor) for the id in sst's
 * server-set, HttpOnly, 400-day cookie, puts setAnonymousId(that id) first in the buffer and
 * only then starts the SDK, so every event carries the cookie's id. configUrl defaults to
 * the data plane URL (sst serves /sourceConfig/). Calls made meanwhile wait in the buffer. */
(function (w) {
  "use strict";
  var me = document.currentScript;
  var origin = me && me.src ? new URL(me.src).origin : "";
  var TIMEOUT_MS = 3000; // never hold the page's events longer than this
  var METHODS = ["setDefaultInstanceKey", "load", "ready", "page", "track", "identify", "alias",
    "group", "reset", "setAnonymousId", "startSession", "endSession", "consent"];

  function visitor(writeKey) {
    var call = w.fetch(origin + "/v1/visitor", {
      method: "POST", credentials: "include", keepalive: true,
      body: JSON.stringify({ writeKey: writeKey })
    }).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (b) { return b && typeof b.anonymousId === "string" ? b.anonymousId : null; })
      .catch(function () { return null; });
    var late = new Promise(function (resolve) { setTimeout(resolve, TIMEOUT_MS, null); });
    return Promise.race([call, late]);
  }

  function buffer() {
    var q = [];
    METHODS.forEach(function (m) {
      q[m] = function () {
        var args = Array.prototype.slice.call(arguments);
        if (Array.isArray(w.rudderanalytics)) { w.rudderanalytics.push([m].concat(args)); }
        else { return w.rudderanalytics[m].apply(w.rudderanalytics, args); }
      };
    });
    return q;
  }

  w.sstRudderStack = {
    load: function (writeKey, dataPlaneUrl, loadOptions, RudderAnalytics) {
      // The npm UMD build leaves its exports in window.rudderanalytics.
      var Sdk = RudderAnalytics || (w.rudderanalytics && w.rudderanalytics.RudderAnalytics);
      var q = buffer();
      w.rudderanalytics = q;
      var options = Object.assign({ configUrl: dataPlaneUrl }, loadOptions || {});
      q.load(writeKey, dataPlaneUrl, options);
      w.sstRudderStack.ready = visitor(writeKey).then(function (id) {
        if (id) { q.unshift(["setAnonymousId", id]); }
        w.sstRudderStack.anonymousId = id;
        new Sdk(); // replays the buffer: load, then setAnonymousId, then the page's calls
        return id;
      });
      return q;
    }
  };
})(window);
