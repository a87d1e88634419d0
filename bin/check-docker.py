"""What bin/check-docker checks in Python: the Dockerfile and docker-compose.yml say what the
project promises (stages, build targets, packages, paths, services, environment, health
check). Run by bin/check-docker inside its venv, which provides `dockerfile` (Docker's own
BuildKit parser, compiled from Go) and ruamel.yaml (a dependency of check-jsonschema).

Prints one line per failed check and exits 1 if there is any; prints a summary otherwise.
"""

import os
import re
import sys

import dockerfile
from ruamel.yaml import YAML

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
PACKAGE_DIR = "/root/.emacs.d/meta-log"
ENV_VARS = (
    "META_LOG_ENABLE_FEDERATION",
    "META_LOG_MQTT_BROKER",
    "META_LOG_FEDERATION_BLACKBOARD",
    "META_LOG_SYNC_DIRECTORY",
)
HEALTH_EXPRESSION = "(meta-log-federation-connected-p)"

problems = []
passed = 0


def check(ok, message):
    """Record one check; MESSAGE says what is wrong when OK is false."""
    global passed
    if ok:
        passed += 1
    else:
        problems.append(message)
    return ok


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------- Makefile


def make_targets():
    """Targets that the Makefile defines (rule lines `name: ...`)."""
    targets = set()
    for line in read("Makefile").splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+(?:\s+[A-Za-z0-9_.-]+)*)\s*:(?!=)", line)
        if m and not line.startswith("\t"):
            targets.update(m.group(1).split())
    return targets


# ---------------------------------------------------------------- Dockerfile


def substitute(text, args):
    """Expands ${NAME}, ${NAME:-default} and $NAME from ARGS (the ARG defaults)."""

    def one(m):
        name = m.group(1) or m.group(3)
        default = m.group(2)
        value = args.get(name)
        return value if value else (default or "")

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", one, text)


def dockerfile_stages(commands):
    """Splits the parsed Dockerfile into stages: [(image, name, [commands])]."""
    global_args, stages = {}, []
    for c in commands:
        if c.cmd == "ARG" and not stages:
            for v in c.value:
                name, _, default = v.partition("=")
                global_args[name] = default.strip('"')
        elif c.cmd == "FROM":
            image = substitute(c.value[0], global_args)
            name = c.value[2] if len(c.value) >= 3 and c.value[1].upper() == "AS" else None
            stages.append((image, name, []))
        elif stages:
            stages[-1][2].append(c)
    return global_args, stages


def flag(command, name):
    for f in command.flags:
        if f.startswith(f"--{name}="):
            return f.split("=", 1)[1]
    return None


def dockerignore_patterns():
    path = os.path.join(ROOT, ".dockerignore")
    if not os.path.exists(path):
        return []
    return [
        l.strip().rstrip("/")
        for l in read(".dockerignore").splitlines()
        if l.strip() and not l.startswith("#")
    ]


def check_dockerfile():
    try:
        commands = dockerfile.parse_file(os.path.join(ROOT, "Dockerfile"))
    except dockerfile.GoParseError as e:
        check(False, f"Dockerfile does not parse: {e}")
        return {}
    global_args, stages = dockerfile_stages(commands)
    if not check(len(stages) >= 2, f"Dockerfile: {len(stages)} stage(s), a multi-stage build needs 2"):
        return {}
    build_image, build_name, build = stages[0]
    runtime_image, _, runtime = stages[-1]

    m = re.match(r"^(?:docker\.io/(?:library/)?)?rust:(\d+)\.(\d+)[^:]*-bookworm$", build_image)
    check(
        m is not None and (int(m.group(1)), int(m.group(2))) >= (1, 90),
        f"Dockerfile: build stage is `{build_image}`, expected rust:1.90 or newer on bookworm",
    )
    check(build_name is not None, "Dockerfile: the build stage has no name (FROM ... AS build)")
    check(
        re.match(r"^(?:docker\.io/(?:library/)?)?debian:bookworm-slim$", runtime_image) is not None,
        f"Dockerfile: runtime stage is `{runtime_image}`, expected debian:bookworm-slim",
    )

    # The build stage uses the Makefile's own targets, and those targets exist.
    build_runs = " && ".join(" ".join(c.value) for c in build if c.cmd == "RUN")
    make_calls = re.findall(r"\bmake\s+([^&;|]*)", build_runs)
    asked = {w for call in make_calls for w in call.split() if not w.startswith("-") and "=" not in w}
    check("module" in asked, "Dockerfile: the build stage does not run `make module`")
    check("broker" in asked, "Dockerfile: the build stage does not run `make broker`")
    check("cargo" not in build_runs, "Dockerfile: the build stage calls cargo itself instead of make")
    missing = sorted(asked - make_targets())
    check(not missing, f"Dockerfile runs make targets the Makefile lacks: {', '.join(missing)}")

    # Runtime packages.
    runtime_runs = " && ".join(" ".join(c.value) for c in runtime if c.cmd == "RUN")
    installs = re.findall(r"apt-get\s+install\s+([^&;|]*)", runtime_runs)
    packages = {w for i in installs for w in i.split() if not w.startswith("-")}
    for p in ("emacs-nox", "mosquitto-clients"):
        check(p in packages, f"Dockerfile: the runtime stage does not apt-get install {p}")
    check("rm -rf /var/lib/apt/lists" in runtime_runs, "Dockerfile: apt lists are left in the image")

    # The package, its module and the broker at /root/.emacs.d/meta-log.
    copies = [c for c in runtime if c.cmd in ("COPY", "ADD")]
    from_build = [c for c in copies if flag(c, "from") in (build_name, "0")]
    lisp_copy = [c for c in from_build if c.value[0].rstrip("/").endswith("/lisp")]
    check(
        any(c.value[-1].rstrip("/") == PACKAGE_DIR for c in lisp_copy),
        f"Dockerfile: lisp/ (with the built module) is not copied from the build stage to {PACKAGE_DIR}/",
    )
    check(
        any(c.value[0].endswith("meta-log-broker") and c.value[-1].startswith(PACKAGE_DIR) for c in from_build),
        f"Dockerfile: the broker binary is not copied next to the module in {PACKAGE_DIR}",
    )
    ignored = dockerignore_patterns()
    for c in copies:
        if flag(c, "from") is None:
            for src in c.value[:-1]:
                if src == ".":
                    continue
                check(os.path.exists(os.path.join(ROOT, src)), f"Dockerfile: COPY source {src} does not exist")
                check(
                    not any(src.rstrip("/") == p or src.startswith(p + "/") for p in ignored),
                    f"Dockerfile: COPY source {src} is excluded by .dockerignore",
                )
    check(
        any(p in ("lisp/*.so", "*.so", "**/*.so") for p in ignored) and "target" in ignored,
        ".dockerignore must exclude target/ and lisp/*.so, so that no host build slips into the image",
    )
    check(
        any(c.cmd == "COPY" and c.value[-1] == "/root/.emacs.d/init.el" for c in copies),
        "Dockerfile: no init.el installed at /root/.emacs.d/init.el",
    )

    # Main process: the Emacs daemon in the foreground.
    def last(cmd):
        found = [c for c in runtime if c.cmd == cmd]
        return found[-1] if found else None

    cmd, entry = last("CMD"), last("ENTRYPOINT")
    main = " ".join((entry.value if entry else ()) + (cmd.value if cmd else ()))
    check(cmd is not None and cmd.json, "Dockerfile: CMD must be in exec (JSON) form")
    check("--fg-daemon" in main.split(), f"Dockerfile: the main process `{main}` is not `emacs --fg-daemon`")
    check(
        not re.search(r"tail\s+-f|sleep\s+inf|--daemon\b|--bg-daemon", main),
        f"Dockerfile: the main process `{main}` keeps the container alive by other means",
    )

    # Health check: the script asks the daemon with emacsclient.
    health = last("HEALTHCHECK")
    env = {}
    for c in runtime:
        if c.cmd == "ENV":
            pairs = list(c.value)
            for k, v in zip(pairs[0::2], pairs[1::2]):
                env[k] = v.strip('"')
    if check(health is not None and health.value[0] == "CMD", "Dockerfile: no HEALTHCHECK CMD"):
        script = health.value[1]
        source = [c.value[0] for c in copies if c.value[-1] == script]
        if check(source, f"Dockerfile: the health check runs {script}, which no COPY installs"):
            text = read(source[0])
            check(
                "emacsclient" in text and HEALTH_EXPRESSION in text,
                f"{source[0]}: does not ask the daemon `emacsclient --eval '{HEALTH_EXPRESSION}'`",
            )
    for v in ENV_VARS + ("META_LOG_IDENTITY_FILE", "META_LOG_SYNC_STATE_DIRECTORY"):
        check(v in env, f"Dockerfile: no default for {v} (ENV)")
    # The package itself honours every variable the image sets, not only docker/init.el:
    # a batch Emacs in the container (`docker compose exec ... emacs --batch`) reads no init.
    package = "".join(read(os.path.join("lisp", f)) for f in sorted(os.listdir(os.path.join(ROOT, "lisp")))
                      if f.endswith(".el"))
    for v in sorted(v for v in env if v.startswith("META_LOG_")):
        check(f'"{v}"' in package, f"lisp/: the package does not read {v}, which the Dockerfile sets")
    check(env.get("META_LOG_ENABLE_FEDERATION") in ("0", ""), "Dockerfile: federation must be off unless asked for")
    volumes = set()
    for c in runtime:
        if c.cmd == "VOLUME":
            volumes.update(c.value)
    return {"env": env, "volumes": volumes, "health": health}


# ---------------------------------------------------------------- Compose


def interpolate(value):
    """Compose interpolation with an empty environment: defaults apply, $$ is a $."""
    if isinstance(value, str):
        value = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value.replace("$$", "\0"))
        return value.replace("\0", "$")
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


def environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def mounts(service):
    """(source, target) of each volume of SERVICE, short or long syntax."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            out.append((parts[0], parts[1] if len(parts) > 1 else parts[0]))
        else:
            out.append((v.get("source"), v.get("target")))
    return out


def health_text(service):
    test = (service.get("healthcheck") or {}).get("test")
    return " ".join(test) if isinstance(test, list) else str(test or "")


def check_peer(name, service, docker, top_volumes):
    env = environment(service)
    check(service.get("build") is not None, f"compose: {name} is not built from the Dockerfile")
    build = service.get("build") or {}
    if isinstance(build, dict):
        check(build.get("context", ".") == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile",
              f"compose: {name} builds from something else than ./Dockerfile")
    check(env.get("META_LOG_ENABLE_FEDERATION") == "1", f"compose: {name} lacks META_LOG_ENABLE_FEDERATION=1")
    check(env.get("META_LOG_MQTT_BROKER") == "mqtt://mqtt-broker:1883",
          f"compose: {name} has META_LOG_MQTT_BROKER={env.get('META_LOG_MQTT_BROKER')!r}, expected mqtt://mqtt-broker:1883")
    for v in ENV_VARS:
        check(env.get(v), f"compose: {name} does not set {v}")
    health = health_text(service) or (" ".join(docker["health"].value) if docker.get("health") else "")
    check("meta-log-healthcheck" in health, f"compose: {name}'s health check does not ask the daemon")
    deps = service.get("depends_on") or {}
    check("mqtt-broker" in deps, f"compose: {name} does not depend on mqtt-broker")
    if isinstance(deps, dict):
        check((deps.get("mqtt-broker") or {}).get("condition") == "service_healthy",
              f"compose: {name} does not wait for a healthy broker")
    targets = {t: s for s, t in mounts(service)}

    def in_volume(path):
        return any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets)

    state = {
        "identity": os.path.dirname(docker["env"].get("META_LOG_IDENTITY_FILE", "")),
        "synced files": env.get("META_LOG_SYNC_DIRECTORY", ""),
        "blackboard": env.get("META_LOG_FEDERATION_BLACKBOARD", ""),
        "merge history": docker["env"].get("META_LOG_SYNC_STATE_DIRECTORY", ""),
    }
    for what, path in state.items():
        check(path.startswith("/") and in_volume(path), f"compose: {name} keeps its {what} ({path!r}) outside a volume")
    check(set(targets) <= docker["volumes"] | {t for t in targets if not t.startswith("/var/lib/meta-log")},
          f"Dockerfile: VOLUME does not declare {sorted(set(targets) - docker['volumes'])}")
    for source, target in mounts(service):
        if source and not source.startswith((".", "/")):
            check(source in top_volumes, f"compose: volume {source} of {name} is not declared")
    check(not any(t.startswith(PACKAGE_DIR) for t in targets),
          f"compose: {name} mounts a volume over the package in {PACKAGE_DIR}")
    return {t: s for s, t in mounts(service)}


def check_compose(docker):
    yaml = YAML(typ="safe", pure=True)
    with open(os.path.join(ROOT, "docker-compose.yml"), encoding="utf-8") as f:
        compose = interpolate(yaml.load(f))
    services = compose.get("services") or {}
    top_volumes = set((compose.get("volumes") or {}).keys())

    broker = services.get("mqtt-broker")
    if check(broker is not None, "compose: no mqtt-broker service"):
        check(str(broker.get("image", "")).split(":")[0] in ("eclipse-mosquitto", "docker.io/eclipse-mosquitto",
                                                               "docker.io/library/eclipse-mosquitto"),
              f"compose: mqtt-broker image is {broker.get('image')!r}, expected the official eclipse-mosquitto")
        m = dict((t, s) for s, t in mounts(broker))
        conf = m.get("/mosquitto/config/mosquitto.conf")
        if check(conf is not None, "compose: mqtt-broker has no config mounted at /mosquitto/config/mosquitto.conf"):
            check(os.path.isfile(os.path.join(ROOT, conf)), f"compose: {conf} does not exist")
            text = read(conf)
            check(re.search(r"^listener\s+1883\s*$", text, re.M), f"{conf}: no `listener 1883` on all interfaces")
            check(re.search(r"^persistence\s+true\s*$", text, re.M), f"{conf}: persistence is not on")
            data = re.search(r"^persistence_location\s+(\S+)", text, re.M)
            check(data and data.group(1).rstrip("/") in m, f"{conf}: the persistence location is not a volume")
            inc = re.search(r"^include_dir\s+(\S+)", text, re.M)
            check(inc and inc.group(1) in m and os.path.isdir(os.path.join(ROOT, m[inc.group(1)])),
                  f"{conf}: the optional password settings directory is not mounted")
        check(not broker.get("ports"), "compose: mqtt-broker publishes a port on the host")
        check("mosquitto_sub" in health_text(broker), "compose: mqtt-broker has no health check")

    peer = services.get("meta-log")
    peers = [n for n, s in services.items() if "two-peers" in (s.get("profiles") or [])]
    if check(peer is not None, "compose: no meta-log service"):
        check(not peer.get("profiles"), "compose: meta-log must start without a profile")
        first = check_peer("meta-log", peer, docker, top_volumes)
        if check(len(peers) == 1, f"compose: expected one service in profile two-peers, found {peers}"):
            second = check_peer(peers[0], services[peers[0]], docker, top_volumes)
            shared = {s for s in first.values() if s} & {s for s in second.values() if s}
            check(not shared, f"compose: the two peers share volumes {sorted(shared)}")
            check(services[peers[0]].get("image") == peer.get("image"), "compose: the two peers run different images")
    others = set(services) - {"mqtt-broker", "meta-log", *peers}
    check(not others, f"compose: unexpected services {sorted(others)}")


def main():
    docker = check_dockerfile()
    if docker:
        check_compose(docker)
    for p in problems:
        print(f"check-docker: {p}")
    if problems:
        print(f"check-docker: {len(problems)} problem(s), {passed} checks passed")
        return 1
    print(f"check-docker: Dockerfile and docker-compose.yml: {passed} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
