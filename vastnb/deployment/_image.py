"""``Image``: the worker image and its requirements, with the official SDK's chainable methods."""

from __future__ import annotations

import os
from typing import Any, Callable

from ..errors import ConfigurationError
from ..spec import ImageSpec

__all__ = ["Image"]


# The official SDK's private-registry credentials (``vastai.serverless.remote.base.DockerLogin``).
DOCKER_LOGIN = ("docker_login_user", "docker_login_pass", "docker_login_repo")


class Image:
    """What workers run on: base image, installs, environment, GPU requirements.

    Every method returns the image, so calls chain as in the official SDK::

        image = app.image("vastai/pytorch:@vastai-automatic-tag", storage=16)
        image.pip_install("numpy").env(MODE="dev").require(gpu_ram >= 16)

    On the local backend the notebook's own environment is the image: installs
    are recorded for export and Vast, ``env`` is applied to worker processes, and
    ``require`` is matched against this machine's GPUs.
    """

    def __init__(self, from_image: str, storage: float = 50, *, on_change: Callable[[str], str | None] | None = None,
                 **docker_login: str) -> None:
        from ..query import Query

        if not isinstance(from_image, str) or not from_image.strip():
            raise ConfigurationError(
                f"`from_image` must be a non-empty image name such as 'vastai/pytorch:@vastai-automatic-tag'. Instead got {from_image!r}."
            )
        if isinstance(storage, bool) or not isinstance(storage, (int, float)) or storage <= 0:
            raise ConfigurationError(f"`storage` must be a positive number of GB. Instead got {storage!r}.")
        unknown = sorted(set(docker_login) - set(DOCKER_LOGIN))
        if unknown:
            raise ConfigurationError(
                f"image() got unknown argument(s) {', '.join(unknown)}. It takes from_image, storage and, for a private "
                f"registry, the official SDK's {', '.join(DOCKER_LOGIN)}."
            )
        for key, value in docker_login.items():
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"`{key}` must be a non-empty string. Instead got a {type(value).__name__}.")
        self._image = from_image
        self._storage = storage
        self._docker_login = dict(docker_login)  # sent to Vast with the deployment; never shown
        self._envs: dict[str, str] = {}
        self._runs: list[str | tuple[str, ...]] = []
        self._venv: str | None = None
        self._pip_installs: list[str] = []
        self._apt_gets: list[str] = []
        self._requires = Query.search_defaults()
        self._picker: Any = None  # the GPU picker's requirement, replaced as a whole
        self._picker_columns: frozenset[str] = frozenset()  # columns the picker owns: require()'s give way
        self._copies: list[tuple[str, str]] = []
        self._ports: set[tuple[int, str]] = {(3000, "tcp")}
        self._on_change = on_change

    # ------------------------------------------------------------------ official methods
    def pip_install(self, *packages: str) -> "Image":
        self._pip_installs.extend(_strings("pip_install", packages))
        return self

    def apt_get(self, *packages: str) -> "Image":
        self._apt_gets.extend(_strings("apt_get", packages))
        return self

    def run_script(self, script: str) -> "Image":
        self._runs.append(_strings("run_script", (script,))[0])
        return self

    def run_cmd(self, *args: str) -> "Image":
        self._runs.append(tuple(_strings("run_cmd", args)))
        return self

    def env(self, **kwargs: str) -> "Image":
        for key, value in kwargs.items():
            if not isinstance(value, str):
                raise ConfigurationError(
                    f"environment variable {key} must be a string. Instead got {value!r} "
                    f"({type(value).__name__}); write env({key}={str(value)!r})."
                )
            self._envs[key] = value
        return self

    def require(self, *queries: Any) -> "Image":
        """Add GPU/offer requirements: filters from ``vastnb.query`` or the official ``vastai.data.query``, both
        read in the units Vast's docs give (``gpu_ram >= 48`` is 48 GB; see ``vastnb.query.Query.from_vast``)."""
        from ..query import Query

        for q in [Query.coerce(q) for q in queries]:  # the official SDK's Query too, in the documented units
            self._requires.extend(q)
        self._changed("requirement")
        return self

    def copy(self, src: str, dst: str) -> "Image":
        if not os.path.exists(src):
            raise ConfigurationError(f"copy(): source {src!r} does not exist (relative to {os.getcwd()}).")
        self._copies.append((src, dst))
        return self

    def venv(self, path: str) -> "Image":
        self._venv = _strings("venv", (path,))[0]
        return self

    def use_system_python(self) -> "Image":
        self._venv = ""
        return self

    def publish_port(self, number: int, type_: str = "tcp") -> "Image":
        if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:
            raise ConfigurationError(f"publish_port(): `number` must be a port in 1..65535. Instead got {number!r}.")
        if type_ not in ("tcp", "udp"):
            raise ConfigurationError(f"publish_port(): `type_` must be 'tcp' or 'udp'. Instead got {type_!r}.")
        self._ports.add((number, type_))
        return self

    # ------------------------------------------------------------------ vastnb
    @property
    def requirement(self) -> Any:
        """The full query workers must match: ``require(...)`` plus what the GPU picker applied.

        On the columns the picker controls, the picker's choice replaces what ``require(...)`` said."""
        q = self._requires.without(self._picker_columns)
        if self._picker is not None:
            q.extend(self._picker)
        return q

    @property
    def declared_requirement(self) -> Any:
        """What ``require(...)`` declared (with Vast's search defaults), before any GPU picker choice."""
        return self._requires.copy()

    def set_picker_requirement(self, query: Any, columns: Any = ()) -> str | None:
        """Replace what the GPU picker set before (None clears it); says what happens to a running deployment.

        ``columns`` are the ones the picker controls: its choice replaces ``require(...)``'s conditions on
        them (a control left at "any" removes the condition), and every other condition stays."""
        from ..query import Query

        if query is not None and not isinstance(query, Query):
            raise ConfigurationError(f"expected a vastnb.query.Query. Instead got {query!r}.")
        owned = frozenset(columns) | frozenset(query.query if query is not None else ())
        self._requires.without(owned).extend(query if query is not None else Query({}))  # cannot conflict; checks
        self._picker, self._picker_columns = query, owned
        return self._changed("requirement")

    def _changed(self, what: str) -> str | None:
        return self._on_change(what) if self._on_change is not None else None

    def spec(self) -> ImageSpec:
        """The image as declared now, frozen (what a backend deploys)."""
        return ImageSpec(
            name=self._image, storage=self._storage, requirement=self.requirement, envs=dict(self._envs),
            runs=tuple(self._runs), venv=self._venv, pip_installs=tuple(self._pip_installs),
            apt_gets=tuple(self._apt_gets), copies=tuple(self._copies), ports=tuple(sorted(self._ports)),
            docker_login=dict(self._docker_login),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "image": self._image,
            "storage": self._storage,
            "pip_installs": list(self._pip_installs),
            "apt_gets": list(self._apt_gets),
            "envs": dict(self._envs),
            "runs": list(self._runs),
            "copies": list(self._copies),
            "venv": self._venv,
            "ports": sorted(self._ports),
            "search_params": self.requirement.unparse_query(),
            "docker_login": sorted(self._docker_login),  # which were given, not their values
        }

    def __repr__(self) -> str:
        return f"Image({self._image!r}, storage={self._storage}, require={self.requirement.unparse_query()!r})"


def _strings(method: str, values: tuple[Any, ...]) -> list[str]:
    for v in values:
        if not isinstance(v, str):
            raise ConfigurationError(f"{method}() takes strings. Instead got {v!r} ({type(v).__name__}).")
    return list(values)
