"""Search spaces as data: read, validate and declare the tuned hyperparameters.

A search-space file in ``search_spaces/`` is TOML, one table per hyperparameter, named by
the hyperparameter. The same names are used everywhere downstream: in Keras Tuner's ``hp``,
in MLflow params, in the leaderboard and in the README. Example::

    [temperature]
    kind = "float"
    min = 0.05
    max = 0.5
    sampling = "log"

    [projection_dim]
    kind = "choice"
    values = [32, 64, 128]

Kinds: ``int`` and ``float`` (``min``, ``max``, optional ``step`` and ``sampling``, one of
``linear`` or ``log``), ``choice`` (``values``, a non-empty list) and ``fixed`` (``value``).
A file is validated completely when it is read, before any training: an unknown name or
key, a wrong type, an empty range or a value outside what the model accepts is refused with
a `SearchSpaceError` that names the file, the hyperparameter and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import tomllib
from pathlib import Path
from typing import Any

from contrastive.paths import project_root

__all__ = [
    "HYPERPARAMETERS",
    "SearchSpace",
    "SearchSpaceError",
    "HyperparameterSpec",
    "load_search_space",
    "resolve_search_space_path",
]


class SearchSpaceError(ValueError):
    """A search-space file that cannot be used; the message says where and why."""


@dataclasses.dataclass(frozen=True)
class _Allowed:
    """What the model accepts for one hyperparameter."""

    type: type
    low: float | None
    high: float | None
    low_open: bool = False
    required: bool = True
    default: Any = None
    values: tuple | None = None
    help: str = ""

    def describe(self) -> str:
        if self.values is not None:
            return "one of " + ", ".join(repr(v) for v in self.values)
        left = "(" if self.low_open else "["
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{self.type.__name__} in {left}{self.low:g}, {high}]"

    def accepts(self, value: Any) -> bool:
        if self.values is not None:
            return value in self.values
        if self.type is int and (isinstance(value, bool) or not isinstance(value, int)):
            return False
        if self.type is float and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or value <= self.high


# Every hyperparameter the model understands. Adding one means adding it here and reading
# it in `contrastive.hypermodel`; everything else (validation, params, docs) follows.
HYPERPARAMETERS: dict[str, _Allowed] = {
    "encoder_width": _Allowed(
        int, 4, 512, help="filters of the first convolution; later blocks double it"
    ),
    "projection_dim": _Allowed(int, 2, 2048, help="output size of the projection head"),
    "projection_depth": _Allowed(int, 1, 4, help="dense layers in the projection head"),
    "temperature": _Allowed(
        float, 0.0, 10.0, low_open=True, help="softmax temperature of SupCon and NT-Xent"
    ),
    "loss_weight": _Allowed(
        float, 0.0, 1.0, help="w in w * contrastive + (1 - w) * cross-entropy"
    ),
    "learning_rate": _Allowed(
        float, 0.0, 1.0, low_open=True, help="Adam learning rate"
    ),
    "training_mode": _Allowed(
        str,
        None,
        None,
        required=False,
        default="joint",
        values=("joint", "pretrain_probe", "pretrain_finetune"),
        help="joint: one weighted objective from the start; pretrain_probe: "
        "contrastive pre-training, then a linear probe on the frozen encoder; "
        "pretrain_finetune: pre-training, then fine-tuning everything with "
        "cross-entropy",
    ),
    "pretrain_fraction": _Allowed(
        float,
        0.05,
        0.95,
        required=False,
        default=0.5,
        help="share of the epochs spent in contrastive pre-training (two-stage modes)",
    ),
    "augment_strength": _Allowed(
        float,
        0.0,
        3.0,
        required=False,
        default=1.0,
        help="scales every augmentation (shift, rotation, zoom, noise, colour)",
    ),
}

_KIND_KEYS = {
    "int": ({"kind", "min", "max"}, {"step", "sampling"}),
    "float": ({"kind", "min", "max"}, {"step", "sampling"}),
    "choice": ({"kind", "values"}, set()),
    "fixed": ({"kind", "value"}, set()),
}
_SAMPLINGS = ("linear", "log")


@dataclasses.dataclass(frozen=True)
class HyperparameterSpec:
    """One validated hyperparameter of a search space.

    Args:
        name: The hyperparameter's name, a key of `HYPERPARAMETERS`.
        kind: ``"int"``, ``"float"``, ``"choice"`` or ``"fixed"``.
        min: Lower bound for ``int`` and ``float``; None otherwise.
        max: Upper bound for ``int`` and ``float``; None otherwise.
        step: Optional step for ``int`` and ``float``.
        sampling: ``"linear"`` or ``"log"`` for ``int`` and ``float``.
        values: The options of a ``choice``, or the one value of ``fixed``.
    """

    name: str
    kind: str
    min: float | None = None
    max: float | None = None
    step: float | None = None
    sampling: str = "linear"
    values: tuple = ()

    def declare(self, hp) -> Any:
        """Declares this hyperparameter on a Keras Tuner ``HyperParameters`` object.

        Returns:
            The value ``hp`` holds for it in the current trial.
        """
        if self.kind == "int":
            step = None if self.step is None else int(self.step)
            return hp.Int(
                self.name, int(self.min), int(self.max), step=step, sampling=self.sampling
            )
        if self.kind == "float":
            return hp.Float(
                self.name, float(self.min), float(self.max), step=self.step,
                sampling=self.sampling,
            )
        if self.kind == "choice":
            return hp.Choice(self.name, list(self.values))
        return hp.Fixed(self.name, self.values[0])


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A validated search space: the specs, plus where they came from.

    Args:
        path: The file that was read.
        specs: One `HyperparameterSpec` per tuned or fixed hyperparameter in the file.
        text: The file's content, logged as an artifact so a run can be repeated.
    """

    path: Path
    specs: tuple[HyperparameterSpec, ...]
    text: str

    @property
    def digest(self) -> str:
        """sha256 of the file's content."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs)

    def declare(self, hp) -> dict[str, Any]:
        """Declares every hyperparameter on ``hp`` and fills in the optional defaults.

        Returns:
            A dict with a value for every name in `HYPERPARAMETERS`.
        """
        values = {spec.name: spec.declare(hp) for spec in self.specs}
        for name, allowed in HYPERPARAMETERS.items():
            values.setdefault(name, allowed.default)
        return values


def resolve_search_space_path(name_or_path: str | Path) -> Path:
    """Finds a search-space file: a path, or a name in the project's ``search_spaces/``.

    ``"default"`` and ``"default.toml"`` both name ``search_spaces/default.toml``.

    Raises:
        SearchSpaceError: When no such file exists; the message lists the bundled ones.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.resolve()
    bundled = project_root() / "search_spaces"
    for candidate in (bundled / path.name, bundled / f"{path.name}.toml"):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in bundled.glob("*.toml"))
    raise SearchSpaceError(
        f"Search-space file not found: {str(name_or_path)!r}. Pass a path to a TOML file, "
        f"or one of the bundled names in {bundled}: {', '.join(known) or 'none'}."
    )


def load_search_space(name_or_path: str | Path = "default") -> SearchSpace:
    """Reads and validates a search-space file.

    Args:
        name_or_path: A path, or the name of a file in ``search_spaces/``. Defaults to
            ``"default"``.

    Returns:
        The validated `SearchSpace`.

    Raises:
        SearchSpaceError: For a missing or unreadable file, invalid TOML, an unknown
            hyperparameter or key, a wrong type, an empty range, or a value the model does
            not accept. The message names the file, the hyperparameter and the fix.
    """
    path = resolve_search_space_path(name_or_path)
    text = path.read_text(encoding="utf-8")
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SearchSpaceError(f"{path}: not valid TOML ({error}).") from None

    unknown = sorted(set(table) - set(HYPERPARAMETERS))
    if unknown:
        raise SearchSpaceError(
            f"{path}: unknown hyperparameter {unknown[0]!r}. Allowed names: "
            f"{', '.join(HYPERPARAMETERS)}."
        )
    missing = [
        name for name, allowed in HYPERPARAMETERS.items()
        if allowed.required and name not in table
    ]
    if missing:
        raise SearchSpaceError(
            f"{path}: missing hyperparameter {missing[0]!r}. Every file must declare "
            f"{', '.join(n for n, a in HYPERPARAMETERS.items() if a.required)} (use "
            f'kind = "fixed" to pin one).'
        )
    specs = tuple(_parse_spec(path, name, entry) for name, entry in table.items())
    return SearchSpace(path=path, specs=specs, text=text)


def _parse_spec(path: Path, name: str, entry: Any) -> HyperparameterSpec:
    where = f"{path}: [{name}]"
    allowed = HYPERPARAMETERS[name]
    if not isinstance(entry, dict):
        raise SearchSpaceError(f"{where} must be a table with a 'kind' key; received {entry!r}.")

    kind = entry.get("kind")
    if kind not in _KIND_KEYS:
        raise SearchSpaceError(
            f"{where}: kind must be one of {', '.join(map(repr, _KIND_KEYS))}; received "
            f"kind={kind!r}."
        )
    needed, optional = _KIND_KEYS[kind]
    for key in sorted(needed - set(entry)):
        raise SearchSpaceError(f"{where}: kind {kind!r} needs the key {key!r}.")
    for key in sorted(set(entry) - needed - optional):
        raise SearchSpaceError(
            f"{where}: unknown key {key!r} for kind {kind!r}. Allowed keys: "
            f"{', '.join(sorted(needed | optional))}."
        )

    if kind in ("choice", "fixed"):
        values = entry["values"] if kind == "choice" else [entry["value"]]
        if not isinstance(values, list) or not values:
            raise SearchSpaceError(
                f"{where}: values must be a non-empty list; received values={values!r}."
            )
        for value in values:
            _check_value(where, allowed, value, "value")
        return HyperparameterSpec(name=name, kind=kind, values=tuple(values))

    if allowed.values is not None:
        raise SearchSpaceError(
            f"{where}: {name} takes {allowed.describe()}; use kind = \"choice\" or "
            f"\"fixed\" (received kind = {kind!r})."
        )
    if kind == "float" and allowed.type is int:
        raise SearchSpaceError(
            f"{where}: {name} takes whole numbers; use kind = \"int\" (received kind = "
            f"\"float\")."
        )
    low, high = entry["min"], entry["max"]
    _check_value(where, allowed, low, "min", as_type=int if kind == "int" else float)
    _check_value(where, allowed, high, "max", as_type=int if kind == "int" else float)
    if low >= high:
        raise SearchSpaceError(
            f"{where}: empty range, min must be below max; received min={low!r}, "
            f"max={high!r}. Use kind = \"fixed\" for a single value."
        )
    sampling = entry.get("sampling", "linear")
    if sampling not in _SAMPLINGS:
        raise SearchSpaceError(
            f"{where}: sampling must be one of {', '.join(map(repr, _SAMPLINGS))}; "
            f"received sampling={sampling!r}."
        )
    if sampling == "log" and low <= 0:
        raise SearchSpaceError(
            f"{where}: log sampling needs min > 0; received min={low!r}."
        )
    step = entry.get("step")
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0
        or step > high - low or (kind == "int" and not isinstance(step, int))
    ):
        raise SearchSpaceError(
            f"{where}: step must be a positive {kind} no larger than max - min "
            f"({high - low!r}); received step={step!r}."
        )
    return HyperparameterSpec(
        name=name, kind=kind, min=low, max=high, step=step, sampling=sampling
    )


def _check_value(where: str, allowed: _Allowed, value: Any, key: str, as_type=None) -> None:
    if allowed.values is not None:
        if value not in allowed.values:
            raise SearchSpaceError(
                f"{where}: {key}={value!r} is not allowed; use {allowed.describe()} "
                f"({allowed.help})."
            )
        return
    expected = as_type or allowed.type
    wrong_type = isinstance(value, bool) or not isinstance(
        value, (int,) if expected is int else (int, float)
    )
    if wrong_type:
        raise SearchSpaceError(
            f"{where}: {key} must be {'an int' if expected is int else 'a number'}; "
            f"received {key}={value!r} ({type(value).__name__})."
        )
    if not allowed.accepts(value):
        raise SearchSpaceError(
            f"{where}: {key}={value!r} is outside what the model accepts: "
            f"{allowed.describe()} ({allowed.help})."
        )
