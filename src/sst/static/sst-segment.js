/* sst-segment.js: sst's first-party visitor id for Segment's analytics-next (1.x).
 * A "before" plugin: before analytics-next sends anything, one credentialed POST to sst's
 * /v1/visitor reads (or sets) sst's server-set, HttpOnly, 400-day cookie and the SDK's
 * anonymousId becomes that cookie's id. Register it with analytics.register(sstSegment)
 * (snippet) or plugins: [sstSegment] (npm). sst's origin is this script's own. */
(function (w) {
  "use strict";
  var me = document.currentScript;
  var origin = me && me.src ? new URL(me.src).origin : "";
  var TIMEOUT_MS = 3000; // never hold the page's events longer than this

  function visitor(writeKey, anonymousId) {
    var call = w.fetch(origin + "/v1/visitor", {
      method: "POST", credentials: "include", keepalive: true,
      // A JSON string body goes as text/plain: no preflight.
      body: JSON.stringify({ writeKey: writeKey, anonymousId: anonymousId })
    }).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (b) { return b && typeof b.anonymousId === "string" ? b.anonymousId : null; })
      .catch(function () { return null; });
    var late = new Promise(function (resolve) { setTimeout(resolve, TIMEOUT_MS, null); });
    return Promise.race([call, late]);
  }

  w.sstSegment = {
    name: "sst first-party id",
    type: "before",
    version: "1.0.0",
    isLoaded: function () { return true; },
    // analytics-next awaits a "before" plugin's load before it delivers any event.
    load: function (ctx, analytics) {
      var user = analytics.user();
      return visitor(analytics.settings.writeKey, user.anonymousId()).then(function (id) {
        if (id && id !== user.anonymousId()) { analytics.setAnonymousId(id); }
        w.sstSegment.anonymousId = id;
      });
    }
  };
})(window);
