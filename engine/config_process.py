"""Read and check monitor.yaml in a short-lived child process, for the daemon.

Checking a large config needs libyaml's node tree (kept for line numbers), the parsed data
and the models at once: some 90 MB at 10,000 checks, which a long-running process keeps as
its high-water mark after freeing them. The daemon instead has a child process read and
check the file and hand back the accepted configuration as plain data, which it validates
again (quickly: no YAML, no line numbers) into its own models. Problems come back as they
are, so a rejected file reads exactly as `watchkeeper validate` prints it.

    python -m watchkeeper.engine.config_process PATH   # writes one pickled answer
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import asdict
from typing import Any

from watchkeeper.engine import loader
from watchkeeper.engine.config import Validation, config_model, load_config
from watchkeeper.engine.plugins import Registry
from watchkeeper.engine.problems import ConfigError, Problem
from watchkeeper.engine.redaction import REDACTOR


def _answer(path: str) -> dict[str, Any]:
    try:
        validation = load_config(path)
    except ConfigError as exc:
        return {"ok": False, "problems": [asdict(p) for p in exc.problems]}
    except OSError as exc:
        return {"ok": False, "oserror": str(exc)}
    loaded = validation.loaded
    return {
        "ok": True,
        "data": validation.config.model_dump(by_alias=True, exclude_unset=True),
        "problems": [asdict(p) for p in validation.problems],
        "files": list(loaded.files) if loaded else [path],
        "secrets": sorted(loaded.secrets) if loaded else [],
    }


def command(path: str | os.PathLike[str]) -> list[str]:
    """Return the argv of the child that checks a config."""
    return [sys.executable, "-m", "watchkeeper.engine.config_process", os.fspath(path)]


def accept(
    path: str | os.PathLike[str], output: bytes, reg: Registry | None = None, stderr: bytes = b""
) -> Validation:
    """Turn the child's answer into a Validation (raise ConfigError or OSError if refused)."""
    try:
        answer = pickle.loads(output)
    except Exception:
        detail = stderr.decode("utf-8", "replace").strip().splitlines()
        raise OSError(
            f"{path}: the config could not be checked" + (f": {detail[-1]}" if detail else "")
        ) from None
    if "oserror" in answer:
        raise OSError(answer["oserror"])
    problems = [Problem(**p) for p in answer["problems"]]
    if not answer["ok"]:
        raise ConfigError(problems)
    config = config_model(reg).model_validate(answer["data"])
    accepted = loader.Loaded(
        data={},
        files=answer["files"],
        secrets=set(answer["secrets"]),
    )
    loader.register_secrets(accepted)
    REDACTOR.add_from(config)
    return Validation(path=str(path), config=config, loaded=accepted, problems=problems)


def load_config_isolated(
    path: str | os.PathLike[str], *, reg: Registry | None = None
) -> Validation:
    """`load_config` done in a child process (for starting the daemon)."""
    proc = subprocess.run(command(path), capture_output=True, check=False)
    return accept(path, proc.stdout, reg, proc.stderr)


async def aload_config_isolated(
    path: str | os.PathLike[str], *, reg: Registry | None = None
) -> Validation:
    """`load_config` done in a child process without blocking the event loop (reloads)."""
    import anyio

    proc = await anyio.run_process(command(path), check=False)
    return accept(path, proc.stdout, reg, proc.stderr)


def main() -> None:
    sys.stdout.buffer.write(pickle.dumps(_answer(sys.argv[1]), protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
