"""`sst forget` (erase one person, GDPR Art. 17) and `sst purge` (apply [retention])."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from sst.cli.common import SETUP, app_state, default_region, fail, failures_exit

# --- forget ------------------------------------------------------------------------------------


@click.command()
@click.option("--phone", default=None, help="A phone number (any format; default region "
              "from [identity] default_region).")
@click.option("--user-id", default=None)
@click.option("--anonymous-id", default=None)
@click.option("--yes", is_flag=True, help="Erase. Without it only the counts are printed.")
@click.option("--dry-run", is_flag=True, help="Print what would be erased (the default).")
@click.option("--pause", default=0.0, show_default=True, help="Seconds between batches.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def forget(phone, user_id, anonymous_id, yes, dry_run, pause, as_json):
    """Erase a person: events, visitors, links, OTP codes, Exchange bodies (GDPR Art. 17).

    Without --yes this is a dry run. An erasure record with counts only is kept.
    """
    from sst import privacy
    from sst.jsonutil import dumps

    state = app_state()
    try:
        subject = privacy.resolve_subject(state.engine, current_app.config["SECRET_KEY"],
                                          phone=phone, user_id=user_id,
                                          anonymous_id=anonymous_id,
                                          default_region=default_region())
    except privacy.PrivacyError as exc:
        raise click.UsageError(str(exc)) from None
    execute = yes and not dry_run
    with failures_exit("forget"):
        counts = (privacy.forget(state.engine, subject, pause=pause) if execute
                  else privacy.plan_forget(state.engine, subject))
    doc = {"dryRun": not execute, "ids": {"anonymousIds": len(subject.anon_ids),
                                          "userIds": len(subject.user_ids)}, "counts": counts}
    if as_json:
        click.echo(dumps(doc))
        return
    click.echo(("erased" if execute else "would erase (dry run; --yes to erase)")
               + f": a person with {len(subject.anon_ids)} anonymous id(s) and "
               f"{len(subject.user_ids)} user id(s)")
    for table, n in counts.items():
        click.echo(f"  {table:<20} {n}")


# --- purge -------------------------------------------------------------------------------------


@click.command()
@click.option("--yes", is_flag=True, help="Delete. Without it only the counts are printed.")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted (the default).")
@click.option("--batch-size", default=500, show_default=True, help="Rows per transaction.")
@click.option("--pause", default=0.0, show_default=True, help="Seconds between batches.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def purge(yes, dry_run, batch_size, pause, as_json):
    """Apply [retention]: drop old bodies, events, refused payloads and Exchange rows."""
    from sst import privacy
    from sst.jsonutil import dumps

    try:
        policy = privacy.retention_policy(current_app.config.get("RETENTION"))
    except privacy.PrivacyError as exc:
        fail(f"sst purge: {exc}", SETUP)
    if not policy:
        fail("sst purge: no [retention] configured; nothing to do", SETUP)
    state = app_state()
    execute = yes and not dry_run
    with failures_exit("purge"):
        if execute:
            counts = privacy.purge(state.engine, policy, pause=pause, batch=max(1, batch_size))
        else:
            counts = privacy.plan_purge(state.engine, policy)
    if as_json:
        click.echo(dumps({"dryRun": not execute, "policy": policy, "counts": counts}))
        return
    click.echo(("purged" if execute else "would purge (dry run; --yes to purge)")
               + f" with {policy}:")
    for name, n in counts.items():
        click.echo(f"  {name:<20} {n}")
