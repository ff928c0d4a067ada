"""The start-up documents that the vendors' browser SDKs fetch, served by sst instead.

analytics-next (Segment) reads `<cdnURL>/v1/projects/<writeKey>/settings` before it sends
anything; RudderStack's JS SDK v3 reads `<configUrl>/sourceConfig/?writeKey=...`. Both are
built here so that the SDK sends its events to sst and loads no vendor code. Pure: no Flask.
"""

from __future__ import annotations

import hashlib

# analytics-next: every key of `integrations` other than "Segment.io" is a device-mode
# destination whose code it would download from Segment's CDN, so there is only that one.
# `metrics.sampleRate` 0 stops its telemetry timer (sst keeps none of it; POST /v1/m is
# still answered for pages that turn it back on), and `host` keeps any sent to sst.


def segment_settings(write_key: str, api_host: str, protocol: str) -> dict:
    """analytics-next's settings document with its Segment.io destination aimed at sst.

    Args:
        api_host: sst's host (with its port, if any) and "/v1", as analytics-next joins
            `<protocol>://<apiHost>/<t|p|i|...>`.
        protocol: "https", or "http" for a development server.
    """
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": False,
                "maybeBundledConfigIds": {},
                "versionSettings": {"componentTypes": ["browser"]},
                # Credentialed requests carry sst's first-party cookie, so each event is
                # tied to the visitor by the server-set cookie and the cookie is re-issued
                # (400 days) by every answer. A page that sets its own deliveryStrategy
                # (e.g. batching) replaces this one, and should keep credentials "include".
                "deliveryStrategy": {"strategy": "standard",
                                     "config": {"credentials": "include"}},
            },
        },
        "plan": {"track": {"__default": {"enabled": True, "integrations": {}}},
                 "identify": {"__default": {"enabled": True}},
                 "group": {"__default": {"enabled": True}}},
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0, "host": api_host},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


def rudderstack_source_config(source_name: str, write_key: str) -> dict:
    """A RudderStack source config: the source enabled, no device-mode destinations, and the
    SDK's error and metrics reporting (to RudderStack's services) off."""
    # The SDK wants a source id; a digest of the key names the source without showing it.
    source_id = hashlib.sha256(b"sst-source:" + write_key.encode()).hexdigest()[:27]
    return {
        "isHosted": False,
        "source": {
            "id": source_id,
            "name": source_name,
            "writeKey": write_key,
            "enabled": True,
            "workspaceId": "sst",
            "config": {"statsCollection": {"errors": {"enabled": False},
                                           "metrics": {"enabled": False}}},
            "destinations": [],
        },
    }
