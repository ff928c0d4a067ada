"""The config files sst writes for a newcomer: `sst init`'s commented production starter and
`sst dev`'s local one (whose destinations deliver to the dev inbox, sst.ops.inbox)."""

from __future__ import annotations

import secrets

from sst import connectors
from sst.connectors.base import ConnectorSettings

# What each platform calls the event the starter maps "Order Completed" to (a conversion
# action or rule id where the platform wants an id rather than a name).
PURCHASE = {"meta": "Purchase", "tiktok": "CompletePayment", "ga4": "purchase",
            "google_ads": "CONVERSION_ACTION_ID", "google_ads_legacy": "CONVERSION_ACTION_ID",
            "snapchat": "PURCHASE", "reddit": "Purchase", "pinterest": "checkout",
            "linkedin": "CONVERSION_RULE_ID", "microsoft_ads": "purchase",
            "x_ads": "X_EVENT_ID"}


def new_write_key() -> str:
    return "sk_" + secrets.token_urlsafe(24)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


DEV_CONFIG = """\
# Written by `sst dev`: a local, embedded set-up (SQLite, in-process queue).
# The destinations below deliver to this server's inbox, {url}/dev/inbox, which shows
# the exact request each platform would receive. Point them at the real platforms (or add
# others: see `sst init` and docs/connectors.md) when you are ready.
[server]
cookie_name = "sst_aid"

[identity]
otp_provider = "file"
otp_outbox = "otp-outbox.jsonl"

[[source]]
name = "dev"
write_key = "{write_key}"
origins = ["http://localhost:{port}", "http://127.0.0.1:{port}"]

[[destination]]
name = "webhook"
connector = "webhook"
url = "{url}/dev/inbox/webhook"
secret = "{secret}"
[destination.events]
"*" = "*"                        # every event and call, under its own name

[[destination]]
name = "meta"
connector = "meta"
pixel_id = "1234567890"
access_token = "dev-token-not-real"
base_url = "{url}/dev/inbox/meta"    # remove this line to send to Meta itself
[destination.events]
"$page" = "PageView"
"Signed Up" = "CompleteRegistration"
"Order Completed" = "Purchase"
"""


def render_dev_config(host: str, port: int, write_key: str | None = None) -> str:
    return DEV_CONFIG.format(url=f"http://{host}:{port}", port=port,
                             write_key=write_key or new_write_key(), secret=new_secret())


INIT_HEAD = """\
# sst configuration, written by `sst init`. Point SST_CONFIG at this file.
# Every setting: README ("Configuration") and docs/connectors.md. A value written
# "env:NAME" is read from the environment variable NAME at start-up (a missing variable
# fails start-up): keep tokens and secrets there, not in this file.

[server]
cookie_name = "sst_aid"
cookie_domain = ".example.com"        # your site's registrable domain (required in production)

[identity]
# Phone verification (OTP). "file" writes codes to a file: development only.
# otp_provider = "twilio_verify"
# twilio_account_sid = "env:TWILIO_ACCOUNT_SID"
# twilio_auth_token = "env:TWILIO_AUTH_TOKEN"
# twilio_verify_service_sid = "env:TWILIO_VERIFY_SID"

# A browser source: its key is public (it is in your pages); only these origins may use it.
# Origins are scheme://host[:port], exactly as browsers send them.
[[source]]
name = "web"
write_key = "{web_key}"
origins = ["https://www.example.com"]

# A server source: origins = [] means server-side only. Keep this key private, or move it
# to the environment: write_key = "env:SST_SERVER_WRITE_KEY".
[[source]]
name = "server"
write_key = "{server_key}"
origins = []

# A signed JSON POST per event to your own endpoint (X-SST-Signature: HMAC-SHA256 of the
# body with `secret`). Every destination needs an events map: only mapped events are sent.
[[destination]]
name = "hook"
connector = "webhook"
url = "https://hooks.example.com/sst"
secret = "{hook_secret}"                # or "env:SST_WEBHOOK_SECRET"
[destination.events]
"*" = "*"                              # every event and call, under its own name

# The operator dashboard at /admin: a token of 16 characters at least.
# [admin]
# token = "env:SST_ADMIN_TOKEN"

# Ad platforms: uncomment one, fill in its settings (docs/connectors.md says where to find
# each), then check it with `sst destination test NAME` and `sst destination test NAME --send`.
# Every destination also takes retry_max (6), retry_backoff (30 s), timeout (10 s),
# consent_categories, enabled and base_url (a proxy or a test stub).
"""

def _connector_block(name: str, cls) -> str:
    base = set(ConnectorSettings().fields)
    lines = ["# [[destination]]", f'# name = "{name}"', f'# connector = "{name}"']
    for key, fld in cls.settings_schema().fields.items():
        if key in base:
            continue
        if fld.metadata.get("secret"):
            value = f'"env:{name.upper()}_{key.upper()}"'
        elif fld.required:
            value = '"..."'
        else:
            default = fld.load_default
            if default is None or callable(default) or repr(default).startswith("<"):
                value = '"..."'
            elif isinstance(default, bool):
                value = "true" if default else "false"
            elif isinstance(default, str):
                value = f'"{default}"'
            else:
                value = str(default)
        note = "" if fld.required else "      # optional"
        lines.append(f"# {key} = {value}{note}")
    lines.append("# [destination.events]")
    if name == "meta":
        lines.append('# "$page" = "PageView"')
    lines.append(f'# "Order Completed" = "{PURCHASE.get(name, "*")}"')
    return "\n".join(lines)


def render_init_config() -> str:
    text = INIT_HEAD.format(web_key=new_write_key(), server_key=new_write_key(),
                            hook_secret=new_secret())
    blocks = [_connector_block(name, cls) for name, cls in sorted(connectors.registry().items())
              if name != "webhook"]
    return text + "\n" + "\n\n".join(blocks) + "\n"
