"""Fitting a `ScalingLaw` to measured points: Huber loss + L-BFGS, bootstrap intervals, held-out error.

Optimiser: scipy's L-BFGS-B with analytic numpy gradients (`laws.predict_with_gradient`). The problem is tiny (at
most 8 parameters, tens of points) and wants float64 (amplitudes and exponents span orders of magnitude) and box
bounds on the exponents, which L-BFGS-B handles natively; jax would add a compile per shape and float32 by default
for no gain here. BLAS is held to one thread during a fit: L-BFGS-B's tiny BLAS calls on a multi-threaded OpenBLAS
cost 50x more CPU time than the fit itself (measured: 15 s against 0.24 s for one 7-parameter fit).

Parametrisation: R0 as is, log A and log B (amplitudes positive), a and b bounded in [1e-3, 6], log of each
coefficient (coefficients positive). The objective is the mean Huber loss of the residuals divided by delta^2, so it
is O(1) for residuals of order delta whatever delta is (delta defaults to 1e-3 on the recall scale).

Starts (Chinchilla-style): a grid over the non-linear parameters (exponents; coefficients on a log grid scaled to
the components they multiply); for each grid point R0, A and B are solved by linear least squares (they enter
linearly), the best `n_starts` grid points are polished by L-BFGS-B and the lowest objective is kept. Everything is
deterministic; only the bootstrap draws random numbers, from its own seed. When the N_SI and N_CF terms are
interchangeable (`exchangeable_pairs`), the fit labels them so that a <= b.

The fitted values are the per-point means over seeds. With few points some parameters are not identified;
`plan_fit` fixes what the design cannot determine (and says why), and the caller may fix any parameter.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from scipy import optimize
from threadpoolctl import ThreadpoolController

from jaxrec.scaling.laws import LAW_PARAMETERS, LOG_PARAMETERS, ScalingLaw, predict_with_gradient, sum_text

EXPONENT_BOUNDS = (1e-3, 6.0)
LOG_BOUNDS = (-40.0, 40.0)
EXPONENT_GRID = (0.1, 0.3, 0.6, 1.0, 2.0)
COEFFICIENT_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # times the ratio of the sum's base size to the component


@dataclasses.dataclass(frozen=True)
class ScalingData:
    """Points to fit: parameter-count components [P] each, and each point's seed replicates of the metric."""

    labels: tuple[str, ...]
    components: dict[str, np.ndarray]
    replicates: tuple[np.ndarray, ...]

    @classmethod
    def build(cls, components: Mapping[str, Sequence[float]], values: Sequence[float | Sequence[float]],
              labels: Sequence[str] | None = None) -> ScalingData:
        replicates = tuple(np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in values)
        comps = {name: np.asarray(counts, dtype=np.float64) for name, counts in components.items()}
        n = len(replicates)
        if any(len(r) == 0 for r in replicates):
            raise ValueError("every point needs at least one value")
        for name, counts in comps.items():
            if counts.shape != (n,):
                raise ValueError(f"component {name!r} has shape {counts.shape}, expected ({n},)")
        labels = tuple(labels) if labels is not None else tuple(f"p{i}" for i in range(n))
        return cls(labels, comps, replicates)

    def __len__(self) -> int:
        return len(self.replicates)

    @property
    def values(self) -> np.ndarray:
        return np.array([r.mean() for r in self.replicates])

    def subset(self, index: Sequence[int]) -> ScalingData:
        index = list(index)
        return ScalingData(tuple(self.labels[i] for i in index), {k: v[index] for k, v in self.components.items()},
                           tuple(self.replicates[i] for i in index))

    def distinct_points(self, names: Sequence[str]) -> int:
        """How many points differ in the components `names` (replicated configurations count once)."""
        if not names:
            return min(len(self), 1)
        return len(np.unique(np.stack([self.components[n] for n in names], axis=1), axis=0))


@dataclasses.dataclass(frozen=True)
class LawFit:
    """One fit: every parameter's value (None when unused: its term's amplitude is fixed at 0), which were fitted."""

    law: ScalingLaw
    params: dict[str, float | None]
    free: tuple[str, ...]
    fixed: dict[str, float]
    objective: float
    r2: float
    rmse: float
    n_points: int
    converged: bool
    at_bounds: tuple[str, ...]
    message: str

    def predict(self, components: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.law.predict(_usable(self.law, self.params), components)


@dataclasses.dataclass(frozen=True)
class FitPlan:
    """What `plan_fit` decided: parameters fixed (given + forced by the design), the free ones, and why."""

    fixed: dict[str, float]
    free: tuple[str, ...]
    unused: tuple[str, ...]
    notes: tuple[str, ...]
    distinct_points: int

    @property
    def required_points(self) -> int:
        return len(self.free) + 1

    @property
    def feasible(self) -> bool:
        return self.distinct_points >= self.required_points


@dataclasses.dataclass(frozen=True)
class ScalingFit:
    """A fit with its bootstrap intervals and held-out errors; `to_dict()` is what `fit.json` stores."""

    fit: LawFit
    intervals: dict[str, tuple[float, float] | None]
    bootstrap: dict[str, Any]
    held_out: dict[str, Any]
    huber_delta: float

    def to_dict(self) -> dict[str, Any]:
        fit = self.fit
        return {
            "form": fit.law.name, "expression": fit.law.describe(), "unit": fit.law.unit,
            "parameters": {name: {"value": fit.params[name], "fitted": name in fit.free,
                                  "ci": None if self.intervals.get(name) is None else list(self.intervals[name])}
                           for name in fit.law.parameter_names},
            "r2": fit.r2, "rmse": fit.rmse, "n_points": fit.n_points, "objective": fit.objective,
            "converged": fit.converged, "at_bounds": list(fit.at_bounds), "message": fit.message,
            "huber_delta": self.huber_delta, "bootstrap": self.bootstrap, "held_out": self.held_out,
        }


# ----------------------------------------------------------------------------------------------------------------
# Which parameters the design identifies


def free_parameters(law: ScalingLaw, fixed: Mapping[str, float]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(free, unused): an exponent is unused when its amplitude is fixed at 0, as is a coefficient that only
    multiplies into a dropped term."""
    unknown = set(fixed) - set(law.parameter_names)
    if unknown:
        raise ValueError(f"cannot fix {sorted(unknown)}: the {law.name} form has parameters "
                         f"{', '.join(law.parameter_names)}")
    unused = []
    if fixed.get("A", None) == 0:
        unused.append("a")
    if fixed.get("B", None) == 0:
        unused.append("b")
    live = [t.coefficient for terms, amp in ((law.si, "A"), (law.cf, "B")) if fixed.get(amp, None) != 0
            for t in terms if t.coefficient is not None]
    unused += [c for c in law.coefficients if c not in live]
    free = tuple(n for n in law.parameter_names if n not in fixed and n not in unused)
    return free, tuple(n for n in unused if n not in fixed)


def plan_fit(law: ScalingLaw, data: ScalingData, fixed: Mapping[str, float] | None = None, *,
             reduce: bool = False) -> FitPlan:
    """Fix what the design cannot identify, and with `reduce` simplify the form until the points suffice.

    Forced by the design (always): a coefficient whose component is 0 at every point is fixed at 0; several
    constant components in one sum form a single offset, carried by the first one's coefficient (the others fixed
    at 0); a sum with no coefficient-1 component trades its first coefficient against the amplitude (fixed at 1);
    a sum constant over all points is a constant absorbed by R0 (amplitude fixed at 0).
    With `reduce` (the report uses it), while there are fewer distinct points than free parameters + 1: first the
    N_CF term is dropped (B = 0), then the constant offsets (their coefficients fixed at 0).
    """
    fixed = dict(fixed or {})
    notes: list[str] = []
    missing = [c for c in law.components if c not in data.components]
    if missing:
        raise ValueError(f"the {law.name} form needs components {missing}; the points have "
                         f"{sorted(data.components)}")
    comps = data.components
    varies = {c: bool(np.ptp(comps[c]) > 0) for c in law.components}
    nonzero = {c: bool(np.any(comps[c] != 0)) for c in law.components}
    for label, terms, amp in (("N_SI", law.si, "A"), ("N_CF", law.cf, "B")):
        if fixed.get(amp, None) == 0:
            continue
        free_terms = [t for t in terms if t.coefficient is not None and t.coefficient not in fixed]
        for term in free_terms:
            if not nonzero[term.component]:
                fixed[term.coefficient] = 0.0
                notes.append(f"{term.coefficient} fixed at 0: {term.component} is 0 at every point")
        if not any(varies[t.component] for t in terms):
            fixed[amp] = 0.0
            notes.append(f"{amp} fixed at 0: {label} = {sum_text(terms)} is constant over the points, so its term "
                         f"is a constant absorbed by R0")
            continue
        constant = [t for t in terms if t.coefficient is not None and t.coefficient not in fixed
                    and not varies[t.component]]
        for term in constant[1:]:
            fixed[term.coefficient] = 0.0
            notes.append(f"{term.coefficient} fixed at 0: {', '.join(t.component for t in constant)} are constant "
                         f"over the points, so they add one offset to {label}, carried by {constant[0].coefficient}")
        if not any(t.coefficient is None and nonzero[t.component] for t in terms):
            scalable = [t for t in terms if t.coefficient is not None and t.coefficient not in fixed]
            if scalable:
                fixed[scalable[0].coefficient] = 1.0
                notes.append(f"{scalable[0].coefficient} fixed at 1: {label} has no coefficient-1 component "
                             f"that is non-zero, so its scale trades against {amp}")
    free, unused = free_parameters(law, fixed)
    distinct = data.distinct_points(law.components)
    if reduce and distinct < len(free) + 1 and "B" not in fixed:
        fixed["B"] = 0.0
        notes.append(f"B fixed at 0 (N_CF term dropped): {distinct} distinct points cannot fit {len(free)} free "
                     f"parameters (need {len(free) + 1})")
        free, unused = free_parameters(law, fixed)
    if reduce and distinct < len(free) + 1:
        offsets = [t.coefficient for t in law.si + law.cf if t.coefficient in free and not varies[t.component]]
        if offsets:
            for name in offsets:
                fixed[name] = 0.0
            notes.append(f"{', '.join(offsets)} fixed at 0 (constant offsets dropped): still too few points")
            free, unused = free_parameters(law, fixed)
    si_vary = {t.component for t in law.si if varies[t.component] and fixed.get(t.coefficient, 1.0) != 0}
    cf_vary = {t.component for t in law.cf if varies[t.component] and fixed.get(t.coefficient, 1.0) != 0}
    if fixed.get("A", None) != 0 and fixed.get("B", None) != 0 and si_vary == cf_vary and len(si_vary) == 1:
        notes.append(f"N_SI and N_CF both vary only through {next(iter(si_vary))}: the A and B terms are told "
                     f"apart only by their exponents a and b")
    return FitPlan(fixed, free, unused, tuple(notes), distinct)


def exchangeable_pairs(law: ScalingLaw, fixed: Mapping[str, float]) -> list[tuple[str, str]] | None:
    """The parameter pairs to swap when the N_SI and N_CF terms are interchangeable, else None.

    With A, a, B, b free and the two sums alike (same components, coefficient 1 against coefficient 1, a free
    coefficient against a free one, equal fixed coefficients; terms with a coefficient fixed at 0 ignored), the law
    is unchanged by exchanging the terms (e.g. `llm_as_rs`: N_LoRA + gamma N_LLM against N_LoRA + beta N_LLM), so the
    data cannot say which is which. `fit_law` then labels them so that a <= b: the semantic term is the one with the
    slower power law (as in the paper's Table 1, a 0.6 < b 2.23).
    """
    if any(name in fixed for name in ("A", "a", "B", "b")):
        return None

    def live(terms):
        return sorted(((t.component, t.coefficient) for t in terms if fixed.get(t.coefficient, 1.0) != 0),
                      key=lambda item: item[0])

    si, cf = live(law.si), live(law.cf)
    if [c for c, _ in si] != [c for c, _ in cf] or len({c for c, _ in si}) != len(si):
        return None
    pairs = [("A", "B"), ("a", "b")]
    for (_, left), (_, right) in zip(si, cf):
        if left is None or right is None:
            if left != right:
                return None
        elif left in fixed or right in fixed:
            if fixed.get(left) != fixed.get(right):
                return None
        elif left != right:
            pairs.append((left, right))
    return pairs


# ----------------------------------------------------------------------------------------------------------------
# One fit


def _bounds(name: str) -> tuple[float | None, float | None]:
    if name == "R0":
        return (None, None)
    if name in ("a", "b"):
        return EXPONENT_BOUNDS
    return LOG_BOUNDS  # log A, log B, log coefficients


def _is_log(name: str) -> bool:
    return name in LOG_PARAMETERS or name not in LAW_PARAMETERS


def _encode(params: Mapping[str, float], free: Sequence[str]) -> np.ndarray:
    theta = []
    for name in free:
        value = float(params[name])
        value = np.log(max(value, 1e-300)) if _is_log(name) else value
        low, high = _bounds(name)
        theta.append(float(np.clip(value, -np.inf if low is None else low, np.inf if high is None else high)))
    return np.array(theta)


def _decode(theta: np.ndarray, free: Sequence[str], fixed: Mapping[str, float]) -> dict[str, float]:
    params = dict(fixed)
    for name, value in zip(free, theta):
        params[name] = float(np.exp(value)) if _is_log(name) else float(value)
    return params


def _usable(law: ScalingLaw, params: Mapping[str, float | None]) -> dict[str, float]:
    """Every parameter of `law`, unused ones (None or absent: exponents and coefficients of a term whose amplitude
    is 0) set to 1 so the prediction code can run; the term is 0 anyway."""
    values = {name: params.get(name) for name in law.parameter_names}
    return {name: 1.0 if value is None else float(value) for name, value in values.items()}


def _huber(residual: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss and its derivative, elementwise."""
    small = np.abs(residual) <= delta
    loss = np.where(small, 0.5 * residual ** 2, delta * (np.abs(residual) - 0.5 * delta))
    return loss, np.clip(residual, -delta, delta)


def _objective(theta: np.ndarray, law: ScalingLaw, free: Sequence[str], fixed: Mapping[str, float],
               components: Mapping[str, np.ndarray], y: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    params = _usable(law, _decode(theta, free, fixed))
    prediction, grads = predict_with_gradient(law, params, components)
    loss, slope = _huber(prediction - y, delta)
    scale = 1.0 / (len(y) * delta ** 2)
    value = float(loss.sum() * scale)
    gradient = np.array([float((slope * grads[name]).sum() * scale) for name in free])
    if not np.isfinite(value) or not np.all(np.isfinite(gradient)):
        return 1e30, np.zeros(len(free))
    return value, gradient


def _grid_starts(law: ScalingLaw, free: Sequence[str], fixed: Mapping[str, float], components: Mapping[str, np.ndarray],
                 y: np.ndarray, delta: float, n_starts: int) -> list[dict[str, float]]:
    """The best `n_starts` points of a grid over exponents and coefficients, with R0, A, B solved linearly."""
    nonlinear = [n for n in free if n not in ("R0", "A", "B")]
    axes = []
    for name in nonlinear:
        if name in ("a", "b"):
            axes.append(EXPONENT_GRID)
        else:
            axes.append(tuple(g * _coefficient_scale(law, name, components) for g in COEFFICIENT_GRID))
    candidates = []
    for values in itertools.product(*axes):
        params = _usable(law, {"R0": 0.0, "A": 1.0, "B": 1.0, **fixed, **dict(zip(nonlinear, values))})
        candidates.append(_solve_linear(law, free, params, components, y))
    scores = []
    for params in candidates:
        loss, _ = _huber(law.predict(params, components) - y, delta)
        scores.append(loss.sum() if np.isfinite(loss.sum()) else np.inf)
    order = np.argsort(scores, kind="stable")[:n_starts]
    return [candidates[i] for i in order]


def _coefficient_scale(law: ScalingLaw, name: str, components: Mapping[str, np.ndarray]) -> float:
    """The coefficient that makes its component as large as the coefficient-1 part of its sum (typical sizes)."""
    for terms in (law.si, law.cf):
        owned = [t for t in terms if t.coefficient == name]
        if not owned:
            continue
        base = sum(np.median(components[t.component]) for t in terms if t.coefficient is None) / law.unit
        own = np.median(components[owned[0].component]) / law.unit
        if own <= 0:
            return 1.0
        return float(base / own) if base > 0 else float(1.0 / own)
    return 1.0


def _solve_linear(law: ScalingLaw, free: Sequence[str], params: dict[str, float],
                  components: Mapping[str, np.ndarray], y: np.ndarray) -> dict[str, float]:
    """Least squares for the free ones of R0, A, B given the rest (A, B kept positive)."""
    n_si, n_cf = law.sizes(params, components)
    feature = {"R0": np.ones_like(y), "A": -n_si ** -params["a"], "B": -n_cf ** -params["b"]}
    linear = [n for n in ("R0", "A", "B") if n in free]
    target = y - sum((params[n] * feature[n] for n in ("R0", "A", "B") if n not in free), np.zeros_like(y))
    params = dict(params)
    if linear:
        design = np.stack([feature[n] for n in linear], axis=1)
        if np.all(np.isfinite(design)):
            solution = np.linalg.lstsq(design, target, rcond=None)[0]
            params.update(zip(linear, solution))
    for name in ("A", "B"):
        if name in free:
            params[name] = float(min(max(params[name], 1e-8), 1e15))
    if "R0" in free:  # re-centre after clipping the amplitudes
        rest = sum((params[n] * feature[n] for n in ("A", "B")), np.zeros_like(y))
        params["R0"] = float(np.mean(y - rest))
    return params


@functools.cache
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()


def fit_law(law: ScalingLaw, data: ScalingData, fixed: Mapping[str, float] | None = None, *,
            huber_delta: float = 1e-3, n_starts: int = 8, starts: Sequence[Mapping[str, float]] | None = None
            ) -> LawFit:
    """Fit `law` to the per-point means of `data` (parameters in `fixed` held at their values).

    `starts` replaces the grid (the bootstrap and held-out refits start from the full-data optimum).
    """
    fixed = {k: float(v) for k, v in (fixed or {}).items()}
    free, unused = free_parameters(law, fixed)
    y = data.values
    components = data.components
    sizes = law.sizes(_usable(law, fixed), components)
    if np.any(sizes[0] <= 0) or np.any(sizes[1] <= 0):
        raise ValueError(f"the {law.name} form needs N_SI and N_CF > 0 at every point ({law.describe()})")
    with _threadpools().limit(limits=1, user_api="blas"):
        if starts is None:
            starts = _grid_starts(law, free, fixed, components, y, huber_delta, n_starts)
        best = _minimize(law, free, fixed, components, y, huber_delta, starts)
    params: dict[str, float | None] = {name: None for name in law.parameter_names}
    params.update(_decode(best.x, free, fixed))
    at_bounds = [n for n, v in zip(free, best.x)
                 if any(bound is not None and abs(v - bound) < 1e-6 for bound in _bounds(n))]
    swap = exchangeable_pairs(law, fixed)
    if swap is not None and params["a"] > params["b"]:
        exchange = {**dict(swap), **{cf: si for si, cf in swap}}
        params = {exchange.get(name, name): value for name, value in params.items()}
        at_bounds = [exchange.get(name, name) for name in at_bounds]
    for name in unused:
        params[name] = None
    prediction = law.predict(_usable(law, params), components)
    residual = y - prediction
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual ** 2).sum()) / total if total > 0 else float("nan")
    message = best.message if isinstance(best.message, str) else str(best.message)
    return LawFit(law, params, free, fixed, float(best.fun), r2, float(np.sqrt(np.mean(residual ** 2))), len(y),
                  bool(best.success), tuple(at_bounds), message)


def _minimize(law: ScalingLaw, free: Sequence[str], fixed: Mapping[str, float], components: Mapping[str, np.ndarray],
              y: np.ndarray, huber_delta: float, starts: Sequence[Mapping[str, float]]) -> optimize.OptimizeResult:
    """L-BFGS-B from each start; the lowest objective."""
    best = None
    for start in starts:
        theta0 = _encode({**_usable(law, fixed), **start}, free)
        if not free:
            result = optimize.OptimizeResult(x=theta0, success=True, message="nothing to fit",
                                             fun=_objective(theta0, law, free, fixed, components, y, huber_delta)[0])
        else:
            result = optimize.minimize(_objective, theta0, args=(law, free, fixed, components, y, huber_delta),
                                       jac=True, method="L-BFGS-B", bounds=[_bounds(n) for n in free],
                                       options={"maxiter": 3000, "ftol": 1e-15, "gtol": 1e-12})
        if best is None or result.fun < best.fun:
            best = result
    return best


# ----------------------------------------------------------------------------------------------------------------
# Uncertainty and held-out error


def bootstrap(law: ScalingLaw, data: ScalingData, base: LawFit, *, n: int = 200, seed: int = 0, level: float = 0.95,
              resample: Literal["one", "mean"] = "one", huber_delta: float = 1e-3) -> dict[str, Any]:
    """Percentile intervals for the fitted parameters from `n` refits on resampled data.

    With seed replicates the points stay and their seeds are resampled: `one` picks one replicate per point at
    random (its spread is a single seed's, which for 2 seeds equals the spread of a 2-seed mean and is
    conservative for more seeds), `mean` draws as many replicates as the point has, with replacement, and averages
    (the classic bootstrap of the mean, narrow for 2-3 seeds). Points with one replicate keep their value. When no
    point has two replicates, points are resampled with replacement instead; a resample with fewer distinct points
    than free parameters + 1, or one whose design cannot determine a parameter `base` fitted (e.g. it lacks the only
    point with another text encoder), determines nothing: its refit would keep that parameter at `base`'s value.
    Such resamples are skipped and counted (`n_degenerate`). Refits start from `base`. Deterministic for a given
    `seed`.
    """
    rng = np.random.default_rng(seed)
    by_points = all(len(r) == 1 for r in data.replicates)
    samples, failed, degenerate, unconverged = [], 0, 0, 0
    start = _usable(law, base.params)
    for _ in range(n):
        if by_points:
            sample = data.subset(rng.integers(0, len(data), size=len(data)))
            if sample.distinct_points(law.components) < len(base.free) + 1 or unidentified(law, sample, base):
                degenerate += 1
                continue
        else:
            values = []
            for reps in data.replicates:
                if resample == "one":
                    values.append(reps[rng.integers(0, len(reps))])
                else:
                    values.append(reps[rng.integers(0, len(reps), size=len(reps))].mean())
            sample = ScalingData(data.labels, data.components, tuple(np.array([v]) for v in values))
        try:
            refit = fit_law(law, sample, base.fixed, huber_delta=huber_delta, starts=[start])
        except ValueError:
            failed += 1
            continue
        if not np.isfinite(refit.objective) or refit.objective >= 1e29:
            failed += 1
            continue
        # L-BFGS-B often ends in an "abnormal" line search at the optimum (ftol 1e-15): kept, and counted.
        unconverged += not refit.converged
        samples.append([refit.params[name] for name in base.free])
    intervals: dict[str, tuple[float, float] | None] = {name: None for name in law.parameter_names}
    if samples:
        array = np.array(samples)
        tail = 100 * (1 - level) / 2
        for column, name in enumerate(base.free):
            low, high = np.percentile(array[:, column], [tail, 100 - tail])
            intervals[name] = (float(low), float(high))
    method = "points" if by_points else f"seeds-{resample}"
    return {"intervals": intervals, "n": n, "n_used": len(samples), "n_failed": failed + degenerate,
            "n_degenerate": degenerate, "n_unconverged": unconverged, "level": level, "seed": seed,
            "resample": method}


def held_out(law: ScalingLaw, data: ScalingData, base: LawFit, *, order: Sequence[float] | None = None,
             huber_delta: float = 1e-3) -> dict[str, Any]:
    """Prediction error on points left out of the fit: leave-one-out over points, and the largest point predicted
    from the others (largest by `order`, default the sum of the components). Errors are |predicted - observed| and
    that over |observed|. A part is None when the remaining points are too few for the free parameters, or cannot
    determine one of them (`not_identified` says which, per held-out point): refitted from `base`, that parameter
    would keep the value the held-out point gave it."""
    need = len(base.free) + 1
    names = law.components
    order = np.asarray(order if order is not None else sum(data.components[c] for c in names), dtype=np.float64)
    observed = data.values
    start = _usable(law, base.params)
    not_identified: dict[str, str] = {}

    def predict_without(index: int) -> float | None:
        rest = data.subset([j for j in range(len(data)) if j != index])
        if rest.distinct_points(names) < need:
            return None
        missing = unidentified(law, rest, base)
        if missing:
            not_identified[data.labels[index]] = f"the other points do not determine {', '.join(missing)}"
            return None
        refit = fit_law(law, rest, base.fixed, huber_delta=huber_delta, starts=[start])
        return float(refit.predict(data.subset([index]).components)[0])

    def error(index: int, predicted: float | None) -> dict[str, Any] | None:
        if predicted is None:
            return None
        absolute = abs(predicted - observed[index])
        relative = absolute / abs(observed[index]) if observed[index] != 0 else float("inf")
        return {"point": data.labels[index], "observed": float(observed[index]), "predicted": predicted,
                "abs_error": float(absolute), "rel_error": float(relative)}

    per_point = [error(i, predict_without(i)) for i in range(len(data))]
    loo = None
    if all(e is not None for e in per_point) and per_point:
        loo = {"points": per_point, "mean_abs_error": float(np.mean([e["abs_error"] for e in per_point])),
               "mean_rel_error": float(np.mean([e["rel_error"] for e in per_point])),
               "max_abs_error": float(np.max([e["abs_error"] for e in per_point]))}
    largest = int(np.argmax(order))
    return {"leave_one_out": loo, "largest": error(largest, predict_without(largest)),
            "needs_points": need + 1, "not_identified": not_identified}


def unidentified(law: ScalingLaw, data: ScalingData, base: LawFit) -> list[str]:
    """The parameters `base` fitted that the design of `data` cannot determine (`plan_fit` would fix them)."""
    plan = plan_fit(law, data, base.fixed)
    return [name for name in base.free if name in plan.fixed]


def fit_scaling(law: ScalingLaw, data: ScalingData, fixed: Mapping[str, float] | None = None, *,
                huber_delta: float = 1e-3, n_bootstrap: int = 200, seed: int = 0, level: float = 0.95,
                resample: Literal["one", "mean"] = "one", order: Sequence[float] | None = None) -> ScalingFit:
    """`fit_law` + `bootstrap` + `held_out`, the whole analysis of one law on one set of points."""
    base = fit_law(law, data, fixed, huber_delta=huber_delta)
    boot = bootstrap(law, data, base, n=n_bootstrap, seed=seed, level=level, resample=resample,
                     huber_delta=huber_delta)
    intervals = boot.pop("intervals")
    errors = held_out(law, data, base, order=order, huber_delta=huber_delta)
    return ScalingFit(base, intervals, boot, errors, huber_delta)
