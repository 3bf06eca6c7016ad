"""scripts/testbed up|down|status|env [component...]"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from cryptopipe_testbed import paths, process
from cryptopipe_testbed.components import ALL, BY_NAME, with_requirements
from cryptopipe_testbed.components.base import Component


def _install_all(components: list[Component]) -> None:
    """Installs run side by side: Maven downloads overlap the Go builds on a cold cache."""

    def install(component: Component) -> tuple[str, float]:
        began = time.monotonic()
        component.install()
        return component.name, time.monotonic() - began

    with ThreadPoolExecutor(max_workers=len(components) or 1) as pool:
        for name, seconds in pool.map(install, components):
            if seconds > 1:
                print(f"installed {name} in {seconds:.0f}s", flush=True)


def up(names: list[str]) -> int:
    components = with_requirements(names)
    _install_all(components)
    for component in components:
        if component.health().healthy:
            print(f"{component.name}: already running", flush=True)
            continue
        began = time.monotonic()
        print(f"{component.name}: starting", flush=True)
        try:
            component.stop()  # whatever runs but is unhealthy (a JVM whose main thread died)
            component.start()
        except process.StartError as error:
            print(f"{component.name} failed to start: {error}", file=sys.stderr)
            return 1
        print(f"{component.name}: healthy after {time.monotonic() - began:.1f}s", flush=True)
    return status(names)


def down(names: list[str]) -> int:
    components = [BY_NAME[name] for name in names] if names else list(ALL)
    for component in reversed(components):
        component.stop()
        print(f"{component.name}: stopped", flush=True)
    return 0


def status(names: list[str]) -> int:
    components = with_requirements(names) if names else list(ALL)
    unhealthy = 0
    print(f"{'component':<10} {'version':<10} {'health':<9} {'address':<30} detail")
    for component in components:
        health = component.health()
        unhealthy += not health.healthy
        state = "healthy" if health.healthy else "DOWN"
        print(
            f"{component.name:<10} {component.version:<10} {state:<9} "
            f"{component.address():<30} {health.detail}"
        )
    print(f"run folder: {paths.run_root()} (logs in {paths.log_dir()})")
    return 1 if unhealthy else 0


def env(names: list[str]) -> int:
    components = with_requirements(names) if names else list(ALL)
    for component in components:
        for key, value in component.env().items():
            print(f"export {key}='{value}'")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/testbed", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("components", nargs="*", help=f"any of: {', '.join(BY_NAME)}")
    args = parser.parse_args(argv)
    commands = {"up": up, "down": down, "status": status, "env": env}
    return commands[args.command](args.components)


if __name__ == "__main__":
    raise SystemExit(main())
