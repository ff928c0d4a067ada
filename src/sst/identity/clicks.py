"""Cross-device click ids: which ad click to attach to a person's event.

Rule, per click-id parameter (gclid, fbclid, ttclid, ...), over the touches of every device
linked to the person:

1. Ignore touches seen after the event (plus ``CLOCK_TOLERANCE`` for clock skew between
   devices and servers): a later click cannot cause an earlier conversion, and platforms
   reject conversions that precede the click (Google's CONVERSION_PRECEDES_CLICK).
2. Ignore touches older than that parameter's window before the event.
3. Of the rest, keep the most recent click (last click wins, as the platforms' own tags do
   by overwriting their cookie). Ties on ``seen_at`` go to the greater value, so the result
   does not depend on input order.
4. The chosen Touch keeps its own ``seen_at``: Meta's ``fbc`` embeds the click's time, not the
   conversion's.

Default windows (the longest a platform will still use the click; override per deployment):

- gclid, gbraid, wbraid: 90 days. Google Ads click-through conversion window maximum; older
  uploads fail with EXPIRED_EVENT (docs/platforms.md §3.2; Google's _gcl_aw cookie also 90 d).
- dclid: 90 days. Campaign Manager 360 lookback window maximum (not re-checked).
- fbclid: 90 days. Meta tells integrators to keep the ``_fbc`` cookie 90 days and send it with
  every event (docs/platforms.md §1.4); Meta's click attribution window itself is 7 days
  or less, but fbc also serves as a match key, so we send what the Pixel would send.
- ttclid: 28 days. TikTok's maximum click-through attribution window (TikTok Ads help,
  "attribution window"; Amperity's TikTok Events API guide).
- msclkid: 90 days. Microsoft Advertising's maximum conversion window; UET keeps
  ``_uetmsclkid`` 90 days (not re-checked).
- ScCid: 28 days. Snap's longest click attribution window; Snap accepts events up to 37 days
  old (docs/platforms.md §5.1).
- li_fat_id: 90 days. LinkedIn's longest click-through window; events must be < 90 days old
  (docs/platforms.md §5.4).
- rdt_cid, twclid, epik: 30 days. No authoritative figure found; a conservative default.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

CLOCK_TOLERANCE = timedelta(minutes=5)

# The one list of ad platforms' click-id URL parameters: the platform that owns each and how
# long a click stays attributable by default. Ingest captures exactly these (sst.ingest.touch),
# reports name their platform, deliveries choose among them. Values are case-sensitive.
CLICK_IDS: Mapping[str, tuple[str, timedelta]] = {
    "gclid": ("google", timedelta(days=90)),  # Google Ads
    "gbraid": ("google", timedelta(days=90)),
    "wbraid": ("google", timedelta(days=90)),
    "dclid": ("google", timedelta(days=90)),  # Campaign Manager
    "fbclid": ("meta", timedelta(days=90)),
    "ttclid": ("tiktok", timedelta(days=28)),
    "msclkid": ("microsoft", timedelta(days=90)),
    "ScCid": ("snapchat", timedelta(days=28)),
    "rdt_cid": ("reddit", timedelta(days=30)),
    "li_fat_id": ("linkedin", timedelta(days=90)),
    "twclid": ("x", timedelta(days=30)),
    "epik": ("pinterest", timedelta(days=30)),
}

CLICK_ID_PARAMS = tuple(CLICK_IDS)
DEFAULT_WINDOWS: Mapping[str, timedelta] = {p: w for p, (_, w) in CLICK_IDS.items()}
CLICK_ID_PLATFORM: Mapping[str, str] = {p: owner for p, (owner, _) in CLICK_IDS.items()}

# URL parameters are case-sensitive on paper, but "sccid"/"GCLID" show up in the wild.
_CANONICAL = {name.lower(): name for name in CLICK_ID_PARAMS}


@dataclass(frozen=True)
class Touch:
    param: str
    value: str
    seen_at: datetime
    anonymous_id: str | None = None  # the device it was seen on


def canonical_param(param: str) -> str | None:
    """Return the canonical click-id name for ``param`` (``"sccid"`` -> ``"ScCid"``), else None."""
    return _CANONICAL.get(param.lower()) if isinstance(param, str) else None


def _utc(moment: datetime) -> datetime:
    # Naive datetimes (MySQL DATETIME columns) are taken as UTC, so they compare with aware ones.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def best_click_ids(
    touches: Iterable[Touch],
    event_time: datetime,
    windows: Mapping[str, timedelta] | None = None,
    *,
    tolerance: timedelta = CLOCK_TOLERANCE,
) -> dict[str, Touch]:
    """Pick, per click-id parameter, the most recent eligible click for an event.

    Args:
        touches: click-id sightings from every device linked to the person.
        event_time: when the event happened.
        windows: per-parameter overrides of ``DEFAULT_WINDOWS``; other parameters keep the
            default. Parameters without a window are ignored.
        tolerance: how far after the event a touch may be stamped and still count.

    Returns:
        ``{canonical param: Touch}``, one entry per parameter that has an eligible click;
        the Touch is the caller's own (its ``param`` canonicalised), ``seen_at`` untouched.
    """
    limits = dict(DEFAULT_WINDOWS)
    if windows:
        for name, window in windows.items():
            limits[canonical_param(name) or name] = window
    event_time = _utc(event_time)
    latest_allowed = event_time + tolerance

    best: dict[str, Touch] = {}
    best_key: dict[str, tuple[datetime, str]] = {}
    for touch in touches:
        param = canonical_param(touch.param) or touch.param
        window = limits.get(param)
        if window is None or not touch.value:
            continue
        seen_at = _utc(touch.seen_at)
        if seen_at > latest_allowed or seen_at < event_time - window:
            continue
        key = (seen_at, touch.value)
        if param not in best_key or key > best_key[param]:
            best_key[param] = key
            best[param] = touch if touch.param == param else replace(touch, param=param)
    return best
