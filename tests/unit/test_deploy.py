"""The deployment files (deploy/), checked without a container engine or a systemd to run them.

What the tests hold the files to, each against the code rather than a copy of it:

* every variable the files set is one ``worker.config.Settings`` reads (its field aliases and its
  ``HALO_RECONCILER_`` prefix), and the values they give load as valid settings;
* every command they run (compose ``command``, the Dockerfile's ``CMD`` and ``HEALTHCHECK``, each
  ``ExecStart=``) parses in the real command line, options included;
* one image for every process, built from what pyproject.toml packages and the .dockerignore lets in;
* the migration runs before the worker and beat, in compose and under systemd;
* no key that looks real is written down anywhere.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SYSTEMD = DEPLOY / "systemd"
ENV_EXAMPLE = SYSTEMD / "halo-reconciler.env.example"

EXE = "/opt/halo-reconciler/.venv/bin/halo-reconciler"
UNITS = {
    "migrate": SYSTEMD / "halo-reconciler-migrate.service",
    "beat": SYSTEMD / "halo-reconciler-beat.service",
    "worker": SYSTEMD / "halo-reconciler-worker@.service",
    "serve": SYSTEMD / "halo-reconciler-serve.service",
}
APP_SERVICES = {"migrate", "worker", "beat", "simulator", "serve"}
CONTRACT_VARIABLES = {"DATABASE_URL", "BROKER_URL", "HALO_BASE_URL", "HALO_SUBSCRIPTION_KEY"}



# --- what the code really reads and runs -------------------------------------------------------------


def config_variables() -> set[str]:
    """The environment names ``Settings`` reads: aliases where a field has them, else prefix + name."""
    from pydantic import AliasChoices

    from worker.config import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice.upper() for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            names.add(alias.upper())
        elif field.alias:
            names.add(field.alias.upper())
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def known_variables() -> set[str]:
    return config_variables()


def parse_cli(args: list[str]):
    """Parse ``halo-reconciler ARGS`` with the real command tree; raises on an unknown command or option.

    Returns the (Click) context of the command reached. Duck-typed: typer ships its own copy of Click.
    """
    from worker.cli import app

    command = typer.main.get_command(app)
    name, parent, args = "halo-reconciler", None, list(args)
    while hasattr(command, "commands"):  # a group: descend into the named subcommand
        group_ctx = command.context_class(command, info_name=name, parent=parent)
        name, command, args = command.resolve_command(group_ctx, args)
        assert command is not None, f"no command in {args}"
        parent = group_ctx
    return command.make_context(name, args, parent=parent)


def load_settings_from(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    from worker.config import load_settings

    with monkeypatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        return load_settings()


_HEX_KEY = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{32}(?![0-9A-Za-z])")  # an Azure APIM subscription key
_TOKEN = re.compile(r"[A-Za-z0-9+/=]{24,}")


def looks_like_secret(value: str) -> bool:
    if _HEX_KEY.search(value):
        return True
    return any(re.search(r"\d", t) and re.search(r"[A-Za-z]", t) for t in _TOKEN.findall(value))


# A made-up key of the real shape (32 hex digits, as Azure API Management issues them).
PLANTED_KEY = "3f2a9c7be1d04e6f8a5b2c1d9e8f7a6b"


def test_a_key_written_into_the_deploy_files_is_caught():
    """The no-secret checks run over the real files: with a real-looking key planted where an operator
    would write one, each file's check finds exactly that value; as shipped, none."""
    compose_text = COMPOSE.read_text()
    assert "${HALO_SUBSCRIPTION_KEY" in compose_text
    planted = re.sub(r"\$\{HALO_SUBSCRIPTION_KEY[^}]*\}", PLANTED_KEY, compose_text)
    found = [s for s in string_values(yaml.safe_load(planted)) if looks_like_secret(s)]
    assert found and set(found) == {PLANTED_KEY}
    assert not [s for s in string_values(yaml.safe_load(compose_text)) if looks_like_secret(s)]

    env_lines = ENV_EXAMPLE.read_text().splitlines()
    planted_lines = [f"HALO_SUBSCRIPTION_KEY={PLANTED_KEY}" if line == "HALO_SUBSCRIPTION_KEY=" else line
                     for line in env_lines]
    assert [line for line in planted_lines if looks_like_secret(line)] == [f"HALO_SUBSCRIPTION_KEY={PLANTED_KEY}"]
    assert not [line for line in env_lines if looks_like_secret(line)]


# --- docker-compose.yml ------------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")


def interpolate(value: str, environment: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}`` and ``$$``, against ``environment``."""
    environment = environment or {}

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group("name", "op", "default")
        if op == ":-":
            return environment.get(name) or default
        if op == "-":
            return environment.get(name, default)
        return environment.get(name, "")

    return _INTERPOLATION.sub(replace, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def service_environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def string_values(node) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in string_values(v)]
    if isinstance(node, list):
        return [s for v in node for s in string_values(v)]
    return [str(node)] if isinstance(node, (str, int, float)) else []


def test_compose_has_the_processes(compose):
    assert set(compose["services"]) == {"redis", "postgres"} | APP_SERVICES


def test_compose_app_services_share_one_image(compose):
    services = compose["services"]
    ours = {name for name, s in services.items() if "build" in s}
    assert ours == APP_SERVICES
    images = {json.dumps({"image": services[n].get("image"), "build": services[n]["build"]}, sort_keys=True) for n in ours}
    assert len(images) == 1, images
    build = services["worker"]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
    assert services["worker"]["image"], "the image needs a name, or each service builds its own copy"


def test_compose_backing_services(compose):
    services = compose["services"]
    assert re.fullmatch(r"(redis:7[\w.-]*|valkey/valkey:[\w.-]+)", services["redis"]["image"])
    postgres = services["postgres"]
    assert re.fullmatch(r"postgres:15[\w.-]*", postgres["image"])
    assert "pg_isready" in " ".join(string_values(postgres["healthcheck"]["test"]))
    volume_names = {v.split(":", 1)[0] for v in postgres["volumes"]}
    assert volume_names & set(compose.get("volumes") or {}), "PostgreSQL's data needs a named volume"
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "test" in services["redis"]["healthcheck"]


def test_compose_migrate_runs_db_upgrade_first(compose):
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert depends_on(migrate).get("postgres") == "service_healthy"
    assert str(migrate.get("restart", "no")) == "no", "a one-shot migration must not be restarted forever"
    for name in ("worker", "beat"):
        deps = depends_on(services[name])
        assert deps.get("migrate") == "service_completed_successfully", name
        assert "redis" in deps, name
        assert services[name]["command"] == [name]


def test_compose_commands_parse_in_the_cli(compose):
    expected = {"migrate": "upgrade", "worker": "worker", "beat": "beat", "simulator": "simulator", "serve": "serve"}
    for name in APP_SERVICES:
        args = [interpolate(str(a)) for a in compose["services"][name]["command"]]
        assert parse_cli(args).command.name == expected[name], name
    simulator = parse_cli([interpolate(str(a)) for a in compose["services"]["simulator"]["command"]])
    assert simulator.params["host"] == "0.0.0.0"
    assert simulator.params["port"] == 8080


def test_compose_variables_are_read_by_the_config(compose):
    known = known_variables()
    for name in APP_SERVICES:
        unknown = set(service_environment(compose["services"][name])) - known
        assert not unknown, f"{name} sets variables worker/config.py does not read: {sorted(unknown)}"


def test_compose_environment_loads_as_valid_settings(compose, monkeypatch):
    services = compose["services"]
    for name in ("migrate", "worker", "beat"):
        env = {k: interpolate(v) for k, v in service_environment(services[name]).items()}
        assert CONTRACT_VARIABLES <= set(env), name
        settings = load_settings_from(env, monkeypatch)
        assert settings.database_url and settings.database_url.startswith("postgresql+psycopg://")
        assert not settings.is_embedded
        # The hosts named in the URLs are services of this file.
        assert urlsplit(env["DATABASE_URL"]).hostname in services
        assert urlsplit(env["BROKER_URL"]).hostname in services
        assert urlsplit(settings.halo_base_url).hostname in set(services) | {"api.haloconnect.io", "api.stage.haloconnect.io"}


def test_compose_key_comes_from_the_environment(compose):
    services = compose["services"]
    simulator_key = parse_cli([interpolate(str(a)) for a in services["simulator"]["command"]]).params["key"]
    for name in ("migrate", "worker", "beat"):
        raw = service_environment(services[name])["HALO_SUBSCRIPTION_KEY"]
        match = re.fullmatch(r"\$\{HALO_SUBSCRIPTION_KEY(?::?-(?P<default>[^}]*))?\}", raw)
        assert match, f"{name}: HALO_SUBSCRIPTION_KEY must come from the environment, not be written down"
        default = match.group("default")
        if default:
            # The only key in the file is the simulator's made-up one, and it is the one the simulator wants.
            assert "simulator" in default, default
            assert default == simulator_key
        assert interpolate(raw, {"HALO_SUBSCRIPTION_KEY": "from-env"}) == "from-env"
    assert not [s for s in string_values(compose) if looks_like_secret(s)]


def test_compose_worker_publishes_metrics(compose):
    worker = compose["services"]["worker"]
    port = service_environment(worker)["HALO_RECONCILER_METRICS_PORT"]
    assert port == "9100"
    exposed = {str(p).rsplit(":", 1)[-1] for p in (worker.get("expose") or []) + (worker.get("ports") or [])}
    assert port in exposed


def test_compose_simulator_is_what_the_demo_calls(compose):
    services = compose["services"]
    simulator = parse_cli([interpolate(str(a)) for a in services["simulator"]["command"]])
    base_url = urlsplit(interpolate(service_environment(services["worker"])["HALO_BASE_URL"]))
    assert (base_url.hostname, base_url.port) == ("simulator", simulator.params["port"])
    # The simulator has no use for the reconciler's database, broker or key.
    assert not CONTRACT_VARIABLES & set(service_environment(services["simulator"]))


# --- Dockerfile and .dockerignore ----------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions per stage, continuation lines joined, ARG defaults substituted into FROM."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
            continue
        if instruction == "FROM":
            rest = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), rest)
            stages.append([])
        assert stages, f"{instruction} before FROM"
        stages[-1].append((instruction, rest))
    return stages


def final(instruction: str) -> str | None:
    values = [rest for ins, rest in dockerfile_stages()[-1] if ins == instruction]
    return values[-1] if values else None


def test_dockerfile_builds_a_wheel_then_installs_it_in_a_slim_stage():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    for stage in stages:
        base = stage[0][1].split()[0]
        assert re.fullmatch(r"python:3\.11[\w.]*-slim[\w.-]*", base), base
    build_runs = " ".join(rest for ins, rest in stages[0] if ins == "RUN")
    assert re.search(r"pip (wheel|install build|-m build)", build_runs) or "python -m build" in build_runs
    runtime = stages[-1]
    runtime_runs = " ".join(rest for ins, rest in runtime if ins == "RUN")
    assert "--no-index" in runtime_runs and "halo-reconciler" in runtime_runs, "install the built wheel, nothing fetched"
    assert not [rest for ins, rest in runtime if ins == "COPY" and "--from" not in rest], "no sources in the runtime stage"


def test_dockerfile_runs_as_a_user_it_creates():
    user = final("USER")
    assert user, "the runtime stage needs a USER"
    name = user.split(":")[0]
    assert name not in {"root", "0"}
    runs = " ".join(rest for ins, rest in dockerfile_stages()[-1] if ins == "RUN")
    created = re.search(r"useradd\b[^&;]*", runs)
    assert created, "the user must exist in the image"
    assert f"--uid {name}" in created.group(0) or created.group(0).rstrip().endswith(f" {name}")


def _exec_form(value: str) -> list[str]:
    form = json.loads(value)
    assert isinstance(form, list) and all(isinstance(a, str) for a in form), value
    return form


def test_dockerfile_entrypoint_and_default_command():
    assert _exec_form(final("ENTRYPOINT")) == ["halo-reconciler"]
    command = _exec_form(final("CMD"))
    assert command == ["worker"]
    assert parse_cli(command).command.name == "worker"
    expose = (final("EXPOSE") or "").split()
    assert "9100" in expose


def test_dockerfile_healthcheck_uses_the_health_command():
    healthcheck = final("HEALTHCHECK")
    assert healthcheck and healthcheck.upper() != "NONE"
    options, _, command = healthcheck.partition("CMD ")
    assert all(o.startswith("--") for o in options.split()), options
    argv = _exec_form(command)
    assert argv[:2] == ["halo-reconciler", "health"]
    parse_cli(argv[1:])  # the options it passes are the command's own


def _dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex)))
    return rules


def in_build_context(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, regex in _dockerignore_rules():
        if any(regex.fullmatch(c) for c in candidates):
            ignored = not negate
    return not ignored


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "worker/__pycache__",
        "tasks/__pycache__/workflow.cpython-311.pyc",
        "halo_reconciler.egg-info/PKG-INFO",
        "tests/unit/test_cli.py",
        "tests/utils/builders.py",
        ".hypothesis/examples/x",
        "deploy/systemd/halo-reconciler.env.example",
        "worker/.env",
    ],
)
def test_dockerignore_keeps_out(path):
    assert not in_build_context(path)


def test_dockerfile_copies_what_pyproject_packages():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = set()
    for stage in dockerfile_stages():
        for ins, rest in stage:
            if ins == "COPY" and "--from" not in rest:
                *sources, _target = [t for t in rest.split() if not t.startswith("--")]
                copied.update(s.rstrip("/") for s in sources)
    packages = {p.rstrip("*.") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages, "pyproject names no packages"
    needed = {"pyproject.toml", pyproject["project"]["readme"]} | packages
    assert needed <= copied, f"the Dockerfile does not COPY {sorted(needed - copied)}"
    for source in copied:
        assert (ROOT / source).exists(), source
        files = [source] if (ROOT / source).is_file() else [
            str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        ]
        assert files and all(in_build_context(f) for f in files), f".dockerignore keeps out part of {source}"
    assert in_build_context("models/migrations/script.py.mako")


def test_dockerfile_variables_are_read_by_the_config():
    env: dict[str, str] = {}
    for stage in dockerfile_stages():
        for ins, rest in stage:
            if ins == "ENV":
                env.update(token.split("=", 1) for token in shlex.split(rest))
    ours = {k for k in env if k.startswith("HALO_") or k in CONTRACT_VARIABLES}
    assert ours <= known_variables(), sorted(ours - known_variables())
    assert not CONTRACT_VARIABLES & ours, "the image must not carry a deployment's database, broker or key"
    assert not [v for v in env.values() if looks_like_secret(v)]


# --- systemd units --------------------------------------------------------------------------------------


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(path.read_text(), source=str(path))
    return parser


def unit_environment(unit: configparser.ConfigParser) -> dict[str, str]:
    value = unit["Service"].get("Environment", "")
    return dict(assignment.split("=", 1) for assignment in shlex.split(value))


def systemd_unescape(value: str, instance: str = "1") -> str:
    """systemd's specifiers (%i, %H, %S, %%) and then its ``$$``, as it does to ExecStart."""
    specifiers = {"i": instance, "I": instance, "H": "testhost", "S": "/var/lib", "%": "%"}
    value = re.sub(r"%(.)", lambda m: specifiers[m.group(1)], value)
    return value.replace("$$", "$")


def exec_args(unit: configparser.ConfigParser) -> list[str]:
    """The halo-reconciler arguments of ExecStart, looking through an ``sh -c`` wrapper."""
    tokens = shlex.split(unit["Service"]["ExecStart"])
    if Path(tokens[0]).name in {"sh", "bash"} and tokens[1] == "-c":
        tokens = shlex.split(tokens[2])
    assert EXE in tokens, f"ExecStart must run {EXE}"
    return [systemd_unescape(t) for t in tokens[tokens.index(EXE) + 1 :]]


@pytest.fixture(scope="module")
def units() -> dict[str, configparser.ConfigParser]:
    return {name: read_unit(path) for name, path in UNITS.items()}


def test_units_exist_and_worker_is_a_template():
    assert all(path.is_file() for path in UNITS.values())
    assert UNITS["worker"].name.endswith("@.service")


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_is_hardened_and_restarts(units, name):
    unit = units[name]
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    assert service.get("User") == "halo-reconciler"
    assert service.get("Group", "halo-reconciler") == "halo-reconciler"
    assert service.get("NoNewPrivileges") == "yes"
    assert service.get("ProtectSystem") == "strict"
    assert service.get("PrivateTmp") == "yes"
    assert service.get("Restart") == "on-failure"
    assert service.get("EnvironmentFile") == "/etc/halo-reconciler/env"
    assert unit["Install"].get("WantedBy") == "multi-user.target"
    # ProtectSystem=strict leaves only the state directory writable: the data directory must be there.
    state = service.get("StateDirectory")
    assert state
    assert unit_environment(unit)["HALO_RECONCILER_DATA_DIR"] == f"%S/{state}"


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_runs_a_real_command(units, name):
    args = exec_args(units[name])
    ctx = parse_cli(args)
    assert ctx.command.name == {"migrate": "upgrade", "beat": "beat", "worker": "worker", "serve": "serve"}[name]
    if name == "migrate":
        assert args == ["db", "upgrade"]


def test_migrate_is_a_oneshot_the_others_require(units):
    migrate = units["migrate"]["Service"]
    assert migrate.get("Type") == "oneshot"
    assert migrate.get("RemainAfterExit") == "yes", "without it, Requires= sees the migration as stopped"
    for name in ("beat", "worker", "serve"):
        section = units[name]["Unit"]
        assert "halo-reconciler-migrate.service" in section.get("Requires", "").split(), name
        assert "halo-reconciler-migrate.service" in section.get("After", "").split(), name


def env_file_entries(path: Path) -> dict[str, str]:
    """NAME=value lines, commented-out ones included (they document variables too)."""
    entries = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            entries[match.group(1)] = match.group(2)
    return entries


def test_unit_and_env_file_variables_are_read_by_the_config(units):
    known = known_variables()
    for name, unit in units.items():
        unknown = set(unit_environment(unit)) - known
        assert not unknown, f"{name} unit sets {sorted(unknown)}"
    entries = env_file_entries(ENV_EXAMPLE)
    assert CONTRACT_VARIABLES <= set(entries)
    assert not set(entries) - known, sorted(set(entries) - known)


def test_env_example_holds_no_key_and_loads(monkeypatch):
    text = ENV_EXAMPLE.read_text()
    active = {k: v for k, v in (line.split("=", 1) for line in text.splitlines() if re.match(r"[A-Z][A-Z0-9_]*=", line))}
    assert active.get("HALO_SUBSCRIPTION_KEY") == "", "the example must leave the key empty"
    assert not [line for line in text.splitlines() if looks_like_secret(line)]
    settings = load_settings_from(active, monkeypatch)
    assert settings.database_url and settings.database_url.startswith("postgresql+psycopg://")
    assert settings.broker_url and settings.broker_url.startswith("redis://")


def test_the_metrics_port_the_deploy_files_set_is_valid_configuration(compose, units, monkeypatch):
    name = "HALO_RECONCILER_METRICS_PORT"
    assert name in config_variables()
    values = {interpolate(service_environment(s)[name]) for s in compose["services"].values() if name in service_environment(s)}
    values |= {u for unit in units.values() if (u := unit_environment(unit).get(name))}
    values |= {v for k, v in env_file_entries(ENV_EXAMPLE).items() if k == name}
    assert values
    for value in values:
        load_settings_from({name: value}, monkeypatch)
