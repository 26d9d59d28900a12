"""Configuration: validation errors are one line naming the key, exit code 2; precedence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pgarchitect.cli import main
from pgarchitect.config import STORE_DSN_MISSING, load_settings, parse_duration
from pgarchitect.demo.processes import free_port
from pgarchitect.errors import ConfigError


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("yaml_text", "key", "expected"),
    [
        ("exporter:\n  listen_adress: 1.2.3.4:9\n", "exporter.listen_adress", "unknown key"),
        ("bogus: 1\n", "bogus", "unknown key"),
        ("exporter:\n  statements_top_n: many\n", "exporter.statements_top_n",
         "expected an integer"),
        ("exporter:\n  statements_top_n: 0\n", "exporter.statements_top_n", "positive"),
        ("analyzer:\n  snapshot_cache_bytes: -1\n", "analyzer.snapshot_cache_bytes",
         "expected 0 or a positive integer, got -1"),
        ("exporter:\n  min_refresh_interval: soon\n", "exporter.min_refresh_interval", "duration"),
        ("analyzer:\n  schedule: '0 25 * * *'\n", "analyzer.schedule", "hour field: 25"),
        ("analyzer:\n  schedule: 'every sunday'\n", "analyzer.schedule", "expected 5 fields"),
        ("analyzer:\n  timezone: Mars/Olympus\n", "analyzer.timezone", "unknown time zone"),
        ("store:\n  dsn: mysql://root@db/x\n", "store.dsn", "postgresql://"),
        ("store:\n  dsn: just-a-hostname\n", "store.dsn", "expected a postgresql:// URI"),
        ("targets:\n  - name: a\n", "targets[0].dsn", "is required"),
        ("targets: {name: a}\n", "targets", "expected a list"),
        ("exporter:\n  listen: nowhere\n", "exporter.listen", "HOST:PORT"),
        ("exporter:\n  orm_paths:\n    rules:\n      - {application_name: '(', orm_path: x}\n",
         "exporter.orm_paths.rules[0].application_name", "regular expression"),
    ],
)
def test_bad_config_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], yaml_text: str, key: str, expected: str
) -> None:
    code, _out, err = run_cli(["migrate", "--config", write(tmp_path, yaml_text), "--check-config"],
                             capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert key in lines[0]
    assert expected in lines[0]
    assert "Traceback" not in err


def test_invalid_yaml_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["migrate", "--config", write(tmp_path, "a: [1,\nb: 2\n")], capsys)
    assert code == 2
    assert "line" in err and len(err.strip().splitlines()) == 1


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["migrate", "--config", str(tmp_path / "nope.yml")], capsys)
    assert code == 2
    assert "cannot read config file" in err


@pytest.mark.parametrize("command", [["migrate"], ["snapshot", "--target", "postgresql://a@h/d"],
                                     ["audit", "--target", "postgresql://a@h/d"],
                                     ["recommendations"], ["propose", "1", "--out", "x"]])
def test_missing_store_is_the_same_line_for_every_command(
    command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGARCHITECT_STORE_DSN", raising=False)
    code, out, err = run_cli(command, capsys)
    assert (code, out) == (2, "")
    assert err == f"pgarchitect: config: store.dsn: {STORE_DSN_MISSING}\n"


def test_unreachable_dsn_is_one_line_without_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("PGARCHITECT_STORE_DSN", f"postgresql://app:hunter2@127.0.0.1:{port}/store")
    code, _, err = run_cli(["migrate"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "cannot connect to store" in err
    assert "hunter2" not in err
    assert "****" in err


@pytest.mark.parametrize("argv", [
    ["migrate", "--store", "postgresql://app:hunter2@127.0.0.1:1/store"],
    ["migrate", "--store", "host=127.0.0.1 port=1 password=hunter2"],
    ["snapshot", "--target", "app=postgresql://app:hunter2@127.0.0.1:1/app", "--store",
     "postgresql://x@127.0.0.1:1/s"],
    ["exporter", "--dsn", "postgresql://u@127.0.0.1:1/a", "--dsn",
     "postgresql://u@127.0.0.1:1/b?password=hunter2"],
])
def test_a_password_on_the_command_line_is_one_warning_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli([*argv, "--check-config"], capsys)
    assert code == 0, err
    warning, done = err.splitlines()
    assert warning.startswith("pgarchitect: warning: the password given with --")
    assert "visible to other users of this machine (ps" in warning
    for advice in ("dsn_file", "passfile", "PGPASSWORD"):
        assert advice in warning
    assert "hunter2" not in err and done == "configuration OK"


def test_no_warning_without_a_password(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["migrate", "--store", "postgresql://app@127.0.0.1:1/store",
                            "--check-config"], capsys)
    assert (code, err) == (0, "configuration OK\n")


def test_check_config_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cr3t-token\n")
    cfg = write(tmp_path, (
        "targets:\n  - name: app\n    dsn: postgresql://mon:pa55@db1/app\n"
        "  - name: quoted\n    dsn: \"host=db2 password='Secret\\\\ Q' dbname=x\"\n"
        "  - name: escaped\n    dsn: 'host=db3 password=Other\\ R dbname=y'\n"
        f"analyzer:\n  admin_token_file: {secret}\n"
        "  alertmanager_url: http://am-user:am5ecret@am:9093\n"
        "  public_url: https://pga.example/?password=pub5ecret&x=1\n"
        "store:\n  dsn: host=meta dbname=pga user=pga password=zz9\n"
    ))
    code, out, err = run_cli(["analyzer", "--config", cfg, "--check-config"], capsys)
    assert code == 0, err
    for secret_text in ("pa55", "s3cr3t", "zz9", "Secret", " Q", "Other", " R", "am5ecret",
                        "pub5ecret"):
        assert secret_text not in out, secret_text
    assert "postgresql://mon:****@db1/app" in out
    assert "password=****" in out
    assert "http://am-user:****@am:9093" in out
    assert "https://pga.example/?password=****&x=1" in out
    assert "host=db3 password=**** dbname=y" in out


def test_precedence_flags_env_file_defaults(tmp_path: Path) -> None:
    cfg = write(tmp_path, "exporter:\n  min_refresh_interval: 7s\n  statements_top_n: 30\n"
                          "  lock_timeout: 2s\n")
    env = {"PGARCHITECT_EXPORTER__MIN_REFRESH_INTERVAL": "9s",
           "PGARCHITECT_EXPORTER__STATEMENTS_TOP_N": "40"}
    s = load_settings(cfg, {"exporter": {"min_refresh_interval": "11s"}}, env)
    assert s.exporter.min_refresh_interval == 11.0  # flag beats env and file
    assert s.exporter.statements_top_n == 40  # env beats file
    assert s.exporter.lock_timeout == 2.0  # file beats default
    assert s.exporter.statement_timeout == 5.0  # default


def test_env_shortcuts_and_dsn_file(tmp_path: Path) -> None:
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text("postgresql://mon:pw@db9/sales\n")
    cfg = write(tmp_path, f"targets:\n  - name: sales\n    dsn_file: {dsn_file}\n")
    s = load_settings(cfg, None, {"PGARCHITECT_STORE_DSN": "postgresql://s@meta/pga",
                                  "PGARCHITECT_ADMIN_TOKEN": "x-9f3e-tok"})
    assert s.targets[0].dsn.reveal() == "postgresql://mon:pw@db9/sales"
    assert s.store.dsn is not None and s.store.dsn.reveal() == "postgresql://s@meta/pga"
    assert s.analyzer.admin_token is not None and s.analyzer.admin_token.reveal() == "x-9f3e-tok"
    assert "9f3e" not in repr(s)


def test_both_dsn_and_dsn_file_is_an_error(tmp_path: Path) -> None:
    cfg = write(tmp_path, "store:\n  dsn: postgresql://a@b/c\n  dsn_file: /x\n")
    with pytest.raises(ConfigError, match="either dsn or dsn_file"):
        load_settings(cfg, None, {})


def test_duplicate_target_names(tmp_path: Path) -> None:
    cfg = write(tmp_path, "targets:\n  - {name: a, dsn: 'postgresql://x@h/a'}\n"
                          "  - {name: a, dsn: 'postgresql://x@h/b'}\n")
    with pytest.raises(ConfigError, match="used twice"):
        load_settings(cfg, None, {})


def test_settings_are_immutable() -> None:
    s = load_settings(None, None, {})
    with pytest.raises(AttributeError):
        s.exporter.statements_top_n = 5  # type: ignore[misc]


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("5s", 5.0), ("5m", 300.0), ("1h30m", 5400.0), ("7d", 604800.0), (3, 3.0),
])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text, "k") == seconds


def test_cli_process_prints_no_traceback(tmp_path: Path) -> None:
    cfg = write(tmp_path, "exporter:\n  nonsense: true\n")
    proc = subprocess.run([sys.executable, "-m", "pgarchitect", "exporter", "--config", cfg],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "pgarchitect: config: exporter.nonsense: unknown key (expected one of: connect_timeout, "
        "disabled_collectors, listen, lock_timeout, max_application_names, "
        "min_refresh_interval, orm_paths, postgres_exporter_compat, "
        "query_text_length, scrape_timeout, slow_refresh_interval, statement_timeout, "
        "statements_keep_scrapes, "
        "statements_max_series, statements_top_n, text_cache_size, top_indexes, top_tables, "
        "work_mem)"
    )


def _documented_block() -> str:
    """The YAML block of docs/configuration.md, "Keys and defaults"."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    section = text.split("## Keys and defaults", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def _setting_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a settings dataclass, nested ones and list items (`[]`) included."""
    import dataclasses
    import typing

    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        keys.append(key)
        tp = hints[f.name]
        args = typing.get_args(tp)
        if dataclasses.is_dataclass(tp):
            keys += _setting_keys(tp, key + ".")  # type: ignore[arg-type]
        elif typing.get_origin(tp) is tuple and args and dataclasses.is_dataclass(args[0]):
            keys += _setting_keys(args[0], key + "[].")
    return keys


def _yaml_keys(value: object, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(prefix + k)
            out |= _yaml_keys(v, prefix + k + ".")
    elif isinstance(value, list):
        for item in value:
            out |= _yaml_keys(item, prefix.rstrip(".") + "[].")
    return out


def test_configuration_doc_lists_every_key_with_its_default(tmp_path: Path) -> None:
    """docs/configuration.md shows every key (nested ones too) and its true default."""
    import yaml

    from pgarchitect.config import Settings

    block = _documented_block()
    documented = _yaml_keys(yaml.safe_load(block))
    # List items shown as `[]` are described in the comment on their line instead.
    missing = [k for k in _setting_keys(Settings)
               if k not in documented and k.rsplit(".", 1)[-1] not in block]
    assert missing == [], f"keys missing from docs/configuration.md: {missing}"
    # The block is a valid configuration and, apart from the example target and store,
    # its values are the defaults.
    loaded = load_settings(write(tmp_path, block), {}, {})
    defaults = Settings()
    assert loaded.exporter == defaults.exporter
    assert loaded.analyzer == defaults.analyzer
    assert loaded.log_level == defaults.log_level
    # The secret-from-file variants are documented too.
    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    for key in ("dsn_file", "admin_token_file"):
        assert key in text


def test_validation_settings_and_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from pgarchitect.cli import build_parser, flags_to_config

    s = load_settings(flags={"analyzer": {"validation": {"mode": "sandbox",
                                                         "lock_timeout": "250ms"}}}, environ={})
    assert s.analyzer.validation.mode == "sandbox"
    assert s.analyzer.validation.lock_timeout == 0.25
    assert s.analyzer.unused_index_min_age == 7 * 86400
    with pytest.raises(ConfigError, match=r"analyzer\.validation\.mode: expected one of auto"):
        load_settings(flags={"analyzer": {"validation": {"mode": "always"}}}, environ={})
    parser = build_parser()
    raw = flags_to_config(parser.parse_args(["audit", "--validation", "transaction"]))
    assert raw["analyzer"]["validation"]["mode"] == "transaction"
    raw = flags_to_config(parser.parse_args(["audit", "--no-validate"]))
    assert raw["analyzer"]["validation"]["mode"] == "off"
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["audit", "--validation", "maybe"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'maybe'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# files and values that are not one line and exit 2 otherwise (docs/configuration.md, Errors)


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    code, out, err = run_cli(argv, capsys)
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


def test_an_alias_bomb_is_refused_in_one_short_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    bomb += [f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]"
             for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    cfg = write(tmp_path, "log_level:\n  " + "\n  ".join(bomb) + "\n")
    err = _one_line_exit_2(["migrate", "--config", cfg, "--check-config"], capsys,
                           "aliases are not allowed (*a)", "at line 3")
    assert len(err) < 300


def test_duplicate_keys_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, "exporter:\n  listen: 127.0.0.1:1\n  top_tables: 5\n"
                          "  listen: 127.0.0.1:2\n")
    _one_line_exit_2(["exporter", "--config", cfg, "--check-config"], capsys,
                     "duplicate key 'listen'", "at line 4")


def test_a_fifo_is_refused_without_waiting(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import os

    fifo = tmp_path / "fifo.yml"
    os.mkfifo(fifo)
    _one_line_exit_2(["migrate", "--config", str(fifo)], capsys, "is not a regular file")
    token = tmp_path / "token"
    os.mkfifo(token)
    cfg = write(tmp_path, f"analyzer:\n  admin_token_file: {token}\n")
    _one_line_exit_2(["migrate", "--config", cfg], capsys, "analyzer.admin_token_file",
                     "is not a regular file")
    _one_line_exit_2(["migrate", "--config", str(tmp_path)], capsys, "is not a regular file")


def test_a_config_file_that_is_not_utf8_or_too_big(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pgarchitect.config import MAX_FILE_BYTES

    path = tmp_path / "latin1.yml"
    path.write_bytes("log_level: info # caf\xe9\n".encode("latin-1"))
    _one_line_exit_2(["migrate", "--config", str(path)], capsys, "is not UTF-8 text",
                     "byte 0xe9 at offset 21")
    big = tmp_path / "big.yml"
    big.write_text("# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    _one_line_exit_2(["migrate", "--config", str(big)], capsys, "is larger than 1024 KiB")


@pytest.mark.parametrize(("yaml_text", "key", "expected"), [
    ("exporter:\n  connect_timeout: .inf\n", "exporter.connect_timeout", "finite duration"),
    ("exporter:\n  connect_timeout: 1" + "0" * 400 + "s\n", "exporter.connect_timeout",
     "finite duration"),
    ("analyzer:\n  min_confidence: .nan\n", "analyzer.min_confidence", "finite number, got nan"),
    ("analyzer:\n  cluster_distance: -.inf\n", "analyzer.cluster_distance", "finite number"),
    ("targets:\n  - {name: '', dsn: 'postgresql://h/a'}\n", "targets[0].name",
     "expected a name, got an empty string"),
    ("targets:\n  - {name: '  ', dsn: 'postgresql://h/a'}\n", "targets[0].name",
     "expected a name"),
    ("store:\n  dsn: 'postgresql://u:pw@[::1/db'\n", "store.dsn", "IPv6 host address"),
    ("store:\n  dsn: 'postgresql://u:pw@h:99999/db'\n", "store.dsn", "invalid port '99999'"),
    ("store:\n  dsn: 'postgresql://h1:5432,h2:0/db'\n", "store.dsn", "invalid port '0'"),
    ("log_level: [" + ", ".join(["verbose"] * 5000) + "]\n", "log_level", "expected a string"),
])
def test_values_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    yaml_text: str, key: str, expected: str) -> None:
    err = _one_line_exit_2(["migrate", "--config", write(tmp_path, yaml_text), "--check-config"],
                           capsys, f"config: {key}: ", expected)
    assert len(err) < 400 and "pw@" not in err


def test_environment_values_are_checked_the_same_way(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGARCHITECT_ANALYZER__MIN_CONFIDENCE", ".nan")
    _one_line_exit_2(["migrate", "--check-config"], capsys,
                     "analyzer.min_confidence: expected a finite number")
    monkeypatch.setenv("PGARCHITECT_ANALYZER__MIN_CONFIDENCE", "[&a x, *a]")
    _one_line_exit_2(["migrate", "--check-config"], capsys,
                     "analyzer.min_confidence: expected a number, got '[&a x, *a]'")


def test_multi_host_uris_are_accepted_as_libpq_reads_them() -> None:
    for dsn in ("postgresql://h1:5432,h2:5433/db", "postgresql://u:p@h1,h2:5433/db",
                "postgresql://[::1]:5432,[::2]/db?target_session_attrs=read-write",
                "host=h1,h2 port=5432,5433 dbname=db"):
        s = load_settings(None, {"targets": [{"name": "app", "dsn": dsn}]}, {})
        assert s.targets[0].dsn.reveal() == dsn


@pytest.mark.parametrize("argv", [["propose", "\u00b2", "--out", "x"],
                                  ["propose", "1x", "--out", "x"],
                                  ["recommendations", "set-status", "\u0663", "accepted"]])
def test_a_recommendation_id_that_is_not_ascii_digits(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "expected a recommendation id (a number)" in err and "Traceback" not in err
