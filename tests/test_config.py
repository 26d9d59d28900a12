"""Configuration: validation errors are one line naming the key, exit code 2; precedence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pgarchitect.cli import main
from pgarchitect.config import STORE_DSN_MISSING, load_settings, parse_duration
from pgarchitect.demo.embedded import free_port
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


def test_unreachable_dsn_is_one_line_without_password(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code, _, err = run_cli(
        ["migrate", "--store", f"postgresql://app:hunter2@127.0.0.1:{port}/store"], capsys
    )
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "cannot connect to store" in err
    assert "hunter2" not in err
    assert "****" in err


def test_check_config_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cr3t-token\n")
    cfg = write(tmp_path, (
        "targets:\n  - name: app\n    dsn: postgresql://mon:pa55@db1/app\n"
        f"analyzer:\n  admin_token_file: {secret}\n"
        "store:\n  dsn: host=meta dbname=pga user=pga password=zz9\n"
    ))
    code, out, err = run_cli(["analyzer", "--config", cfg, "--check-config"], capsys)
    assert code == 0, err
    assert "pa55" not in out and "s3cr3t" not in out and "zz9" not in out
    assert "postgresql://mon:****@db1/app" in out
    assert "password=****" in out


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
