"""Configuration: the TOML file, SST_* environment, SST_ENV=production refusals."""

import pytest

from sst import create_app
from sst.config import DEV_SECRET_KEY, build_sources, load_toml
from sst.errors import ConfigError
from support.apps import SOURCES, base_config

GOOD = """\
[server]
cookie_name = "sst_aid"
cookie_domain = ".example.com"

[identity]
otp_provider = "file"
otp_outbox = "outbox.jsonl"

[[source]]
name = "web"
write_key = "env:TEST_WEB_WRITE_KEY"
origins = ["https://www.example.com/"]
rate_limit = "5/second"
"""


def write(tmp_path, text):
    path = tmp_path / "sst.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_WEB_WRITE_KEY", "wk_from_the_environment")
    cfg = load_toml(write(tmp_path, GOOD))
    assert cfg["COOKIE_NAME"] == "sst_aid"
    assert cfg["COOKIE_DOMAIN"] == ".example.com"
    assert cfg["SOURCES"][0]["write_key"] == "wk_from_the_environment"
    # Relative paths are relative to the config file's folder.
    assert cfg["IDENTITY"]["otp_outbox"] == str((tmp_path / "outbox.jsonl").resolve())


def test_sources_are_indexed_by_write_key_with_rate_and_origins(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_WEB_WRITE_KEY", "wk_from_the_environment")
    sources = build_sources(load_toml(write(tmp_path, GOOD))["SOURCES"])
    source = sources["wk_from_the_environment"]
    assert source.name == "web"
    assert source.origins == frozenset({"https://www.example.com"})
    assert source.rate_limit == "5/second"


@pytest.mark.parametrize("text, fragments", [
    # unknown key
    ('[[source]]\nname = "web"\nwrite_key = "wk_0123456789"\ncolour = "red"\n',
     ["[[source]] #1 'web'", "key 'colour'", "unknown key"]),
    ('[server]\ncookie_nam = "x"\n', ["[server]", "key 'cookie_nam'", "unknown key"]),
    ('[identity]\notp_providr = "file"\n', ["[identity]", "key 'otp_providr'"]),
    # wrong type
    ('[[source]]\nname = "web"\nwrite_key = "wk_0123456789"\norigins = "https://a.test"\n',
     ["[[source]] #1 'web'", "key 'origins'", "list"]),
    ('[server]\ncookie_secure = "yes please"\n', ["[server]", "key 'cookie_secure'"]),
    ('[[source]]\nname = "web"\nwrite_key = 12345678901\n',
     ["[[source]] #1 'web'", "key 'write_key'", "string"]),
    # missing required key
    ('[[source]]\nname = "web"\n', ["[[source]] #1 'web'", "key 'write_key'"]),
    # missing env: secret
    ('[[source]]\nname = "web"\nwrite_key = "env:SST_TEST_SURELY_UNSET_VAR"\n',
     ["[[source]] #1 'web'", "key 'write_key'", "SST_TEST_SURELY_UNSET_VAR", "not set"]),
    ('[identity]\ntwilio_auth_token = "env:SST_TEST_SURELY_UNSET_TOKEN"\n',
     ["[identity]", "key 'twilio_auth_token'", "SST_TEST_SURELY_UNSET_TOKEN"]),
    # bad values
    ('[identity]\notp_provider = "carrier_pigeon"\n', ["[identity]", "key 'otp_provider'"]),
    ('[[source]]\nname = "web"\nwrite_key = "short"\n', ["'web'", "key 'write_key'"]),
    # structure
    ('[weird]\nx = 1\n', ["unknown section 'weird'"]),
    ('source = [1, 2]\n', ["[[source]] #1", "must be a table"]),
    ('source = "web"\n', ["'source' must be an array of tables"]),
    ('destination = [3]\n', ["[[destination]] #1", "must be a table"]),
    ('[server\n', ["not valid TOML"]),
])
def test_a_bad_file_names_file_entry_and_key(tmp_path, text, fragments):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("extra, fragment", [
    ('rate_limit = "lots"', "key 'rate_limit'"),
    ('origins = ["*"]', "key 'origins'"),
    ('origins = ["null"]', "key 'origins'"),
])
def test_bad_source_values_name_file_source_and_key(tmp_path, extra, fragment):
    path = write(tmp_path, f'[[source]]\nname = "web"\nwrite_key = "wk_0123456789"\n{extra}\n')
    with pytest.raises(ConfigError) as info:
        build_sources(load_toml(path)["SOURCES"], f"config file {path}")  # as create_app does
    assert str(path) in str(info.value)
    assert "'web'" in str(info.value)
    assert fragment in str(info.value)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "nope.toml")


def test_create_app_reads_the_file_named_by_sst_config(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_WEB_WRITE_KEY", "wk_from_the_environment")
    monkeypatch.setenv("SST_CONFIG", str(write(tmp_path, GOOD)))
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}"})
    assert set(app.extensions["sst"].sources) == {"wk_from_the_environment"}
    assert app.extensions["sst"].cookie_domain == ".example.com"


def test_create_app_fails_on_a_bad_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SST_CONFIG", str(write(tmp_path, '[server]\nbogus = 1\n')))
    with pytest.raises(ConfigError, match="key 'bogus'"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}"})


@pytest.mark.parametrize("sources, fragment", [
    ([SOURCES[0], {**SOURCES[1], "name": "web"}], "used twice"),
    ([SOURCES[0], {**SOURCES[1], "write_key": SOURCES[0]["write_key"]}], "reuses"),
])
def test_sources_must_be_unique(sources, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_sources(sources)


def test_env_values_that_look_like_json_stay_strings(tmp_path, monkeypatch):
    monkeypatch.setenv("SST_COOKIE_NAME", "12345")
    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite'}"))
    assert app.config["COOKIE_NAME"] == "12345"


# --- SST_ENV=production ----------------------------------------------------------------------

PROD_OK = {"SECRET_KEY": "a-long-private-random-secret-value", "COOKIE_DOMAIN": ".example.com"}


def prod_app(tmp_path, monkeypatch, **overrides):
    monkeypatch.setenv("SST_ENV", "production")
    cfg = {"SOURCES": SOURCES, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}",
           **PROD_OK, **overrides}
    return create_app(cfg)


def test_production_starts_with_safe_settings(tmp_path, monkeypatch):
    app = prod_app(tmp_path, monkeypatch)
    assert app.config["ENV"] == "production"


@pytest.mark.parametrize("overrides, fragment", [
    ({"SECRET_KEY": DEV_SECRET_KEY}, "SST_SECRET_KEY must be set"),
    ({"SECRET_KEY": ""}, "SST_SECRET_KEY must be set"),
    ({"SECRET_KEY": "short"}, "too short"),
    ({"COOKIE_DOMAIN": None}, "cookie_domain must be set"),
    ({"COOKIE_SECURE": False}, "cookie_secure"),
    ({"IDENTITY": {"otp_provider": "file"}}, "otp_provider 'file'"),
    ({"IDENTITY": {"otp_provider": "console"}}, "otp_provider 'console'"),
])
def test_production_refuses_unsafe_settings(tmp_path, monkeypatch, overrides, fragment):
    with pytest.raises(ConfigError, match="SST_ENV=production refuses") as info:
        prod_app(tmp_path, monkeypatch, **overrides)
    assert fragment in str(info.value)


@pytest.mark.parametrize("overrides, fragment", [
    ({"SECRET_KEY": "change-me-64-hex-characters"}, "SST_SECRET_KEY still holds"),
    ({"ADMIN_TOKEN": "change-me-admin-token"}, "SST_ADMIN_TOKEN still holds"),
    ({"ADMIN": {"token": "env:SST_TEST_PLACEHOLDER_TOKEN"}}, "[admin] token still holds"),
    ({"SOURCES": [{"name": "web", "write_key": "sk_change-me"}]},
     "source 'web''s write_key still holds"),
])
def test_production_refuses_deploy_s_placeholders(tmp_path, monkeypatch, overrides, fragment):
    """deploy/sst.env.example copied as shipped must not serve traffic in production."""
    monkeypatch.setenv("SST_TEST_PLACEHOLDER_TOKEN", "change-me-admin-token")
    with pytest.raises(ConfigError, match="SST_ENV=production refuses") as info:
        prod_app(tmp_path, monkeypatch, **overrides)
    assert fragment in str(info.value)


def test_deploy_example_placeholders_are_the_ones_refused():
    from pathlib import Path

    from sst.config import PLACEHOLDER

    example = (Path(__file__).parents[1] / "deploy" / "sst.env.example").read_text()
    for var in ("SST_SECRET_KEY", "SST_ADMIN_TOKEN", "SST_WEB_WRITE_KEY"):
        [line] = [x for x in example.splitlines() if x.startswith(f"{var}=")]
        assert PLACEHOLDER in line


def test_production_refuses_the_default_secret_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SST_ENV", "production")
    monkeypatch.setenv("SST_COOKIE_DOMAIN", ".example.com")
    with pytest.raises(ConfigError, match="SST_SECRET_KEY"):
        create_app({"SOURCES": SOURCES, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}"})


def test_development_accepts_the_default_secret(tmp_path):
    app = create_app({"SOURCES": SOURCES, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}"})
    assert app.config["SECRET_KEY"] == DEV_SECRET_KEY


META_DEST = {"name": "meta-ads", "connector": "meta", "pixel_id": "123",
             "access_token": "EAAB-token", "events": {"Order Completed": "Purchase"}}


def test_a_configured_destination_whose_connector_cannot_load_fails_start_up(tmp_path,
                                                                           monkeypatch):
    # A module set to None in sys.modules raises ImportError on import: a missing dependency.
    monkeypatch.setitem(__import__("sys").modules, "sst.connectors.meta", None)
    with pytest.raises(ConfigError) as err:
        create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'sst.sqlite'}",
                               DESTINATIONS=[META_DEST]))
    assert "meta-ads" in str(err.value) and "'meta' could not load" in str(err.value)


def test_a_connector_nobody_configured_may_fail_to_load(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "sst.connectors.meta", None)
    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'sst.sqlite'}"))
    assert app.extensions["sst"].destinations == {}


@pytest.mark.parametrize("env", ["development", "production"])
def test_the_development_secret_is_refused_on_mysql(env, monkeypatch):
    """M2: the published secret signed cookies and keyed phone hashes on MySQL unnoticed."""
    monkeypatch.delenv("SST_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="published development secret"):
        create_app({"SOURCES": SOURCES, "ENV": env, "COOKIE_DOMAIN": ".example.com",
                    "DATABASE_URL": "mysql+pymysql://root@127.0.0.1:3306/sst_never_made"})


def test_a_private_secret_on_mysql_starts(monkeypatch):
    app = create_app({"SOURCES": SOURCES, "SECRET_KEY": "a-private-random-secret-0123456789",
                      "DATABASE_URL": "mysql+pymysql://root@127.0.0.1:3306/sst_never_made"})
    assert app.config["SECRET_KEY"].startswith("a-private")


# --- mistakes that used to load and then fail quietly ------------------------------------------


@pytest.mark.parametrize("origin, hint", [
    ("www.example.test", "'https://www.example.test'"),
    ("https://www.example.test/shop", "no path, query or trailing text"),
])
def test_an_origin_without_scheme_or_with_a_path_fails_start_up(tmp_path, origin, hint):
    path = write(tmp_path, f'[[source]]\nname = "web"\nwrite_key = "wk_0123456789"\n'
                           f'origins = ["https://ok.example.test", "{origin}"]\n')
    with pytest.raises(ConfigError) as info:
        create_app({"CONFIG": str(path), "DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"})
    assert str(info.value) == (
        f"config file {path}, source 'web': key 'origins': '{origin}' is not an origin: "
        f"write scheme://host[:port] as browsers send it ({hint})")


def test_http_origins_with_ports_are_fine(tmp_path):
    sources = build_sources([{"name": "dev", "write_key": "wk_0123456789",
                              "origins": ["http://localhost:8000", "https://A.example.com/"]}])
    assert sources["wk_0123456789"].origins == frozenset({"http://localhost:8000",
                                                          "https://a.example.com"})


@pytest.mark.parametrize("events", ["", "[destination.events]\n"])
def test_a_destination_without_an_events_map_fails_start_up(tmp_path, events):
    path = write(tmp_path, '[[destination]]\nname = "hook"\nconnector = "webhook"\n'
                           f'url = "https://hooks.example.com/x"\nsecret = "s3cret"\n{events}')
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    assert str(info.value).startswith(
        f"config file {path}, [[destination]] #1 'hook': key 'events': missing or empty: ")
    assert '"*" = "*"' in str(info.value)


def test_a_disabled_destination_may_have_no_events(tmp_path):
    path = write(tmp_path, '[[destination]]\nname = "hook"\nconnector = "webhook"\n'
                           'url = "https://hooks.example.com/x"\nsecret = "s3cret"\n'
                           'enabled = false\n')
    assert load_toml(path)["DESTINATIONS"][0]["name"] == "hook"


@pytest.mark.parametrize("section", ['[admin]\ntoken = "admintok"\n',
                                     '[admin]\ntoken = "env:SST_TEST_SHORT_ADMIN"\n'])
def test_a_short_admin_token_fails_start_up(tmp_path, monkeypatch, section):
    monkeypatch.setenv("SST_TEST_SHORT_ADMIN", "admintok")
    path = write(tmp_path, section)
    with pytest.raises(ConfigError) as info:
        create_app({"CONFIG": str(path), "DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"})
    assert str(info.value) == (f"config file {path}, [admin]: key 'token': too short "
                               "(8 characters): the /admin token takes 16 characters at least")


def test_a_short_admin_token_from_the_environment_fails_start_up(tmp_path, monkeypatch):
    monkeypatch.setenv("SST_ADMIN_TOKEN", "short")
    with pytest.raises(ConfigError, match="^SST_ADMIN_TOKEN: too short"):
        create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'a.db'}"))


def test_a_missing_admin_token_variable_fails_start_up(tmp_path, monkeypatch):
    monkeypatch.delenv("SST_TEST_UNSET_ADMIN", raising=False)
    path = write(tmp_path, '[admin]\ntoken = "env:SST_TEST_UNSET_ADMIN"\n')
    with pytest.raises(ConfigError, match="key 'token': environment variable "
                                          "SST_TEST_UNSET_ADMIN is not set"):
        create_app({"CONFIG": str(path), "DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"})


def test_a_config_error_is_one_cli_line_exit_2(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from sst.cli import main

    path = write(tmp_path, '[admin]\ntoken = "admintok"\n')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["status"], env={"SST_CONFIG": str(path),
                                                       "SST_DATABASE_URL": "sqlite://"})
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"sst: config file {path}, [admin]: key 'token': too "
                                     "short (8 characters): the /admin token takes 16 "
                                     "characters at least")
