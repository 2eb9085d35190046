"""Scaling-law forms of Liu et al. 2025: Recall@k = R0 - A / N_SI^a - B / N_CF^b.

A form (`ScalingLaw`) says which parameter-count components feed the semantic-information size N_SI and the
collaborative-filtering size N_CF, each with coefficient 1 or a free coefficient:

- `sid_gr`:    N_SI = N_RS + gamma1 N_LLM + gamma2 N_QT,  N_CF = N_RS.
  N_RS is the SID recommender's trainable parameters, N_LLM the frozen text encoder's, N_QT the quantizer's. The
  paper's N_CF for SID-GR is the recommender's own parameter count (we assume N_CF = N_RS: the recommender is the
  only part that sees interactions).
- `llm_as_rs`: N_SI = N_LoRA + gamma N_LLM,  N_CF = N_LoRA + beta N_LLM.
- `single`:    N_SI = N_CF = N (one component, e.g. SASRec's recommender); usually fitted with B = 0.

Counts enter in units of `unit` parameters (default 1e6, millions). The paper does not state its unit; millions
is the one under which its Beauty fit (Table 1: A 16.8, a 0.6, R0 0.4529) gives Recall@10 near the measured 0.06
for N_SI of a few hundred million effective parameters, so we use it to keep our numbers comparable.

The law's parameters are R0, A, a, B, b plus one per free coefficient. Prediction and its gradient with respect
to the fitting parametrisation (`theta`: R0, log A, a, log B, b, log coefficient) live here; fitting is in
`jaxrec.scaling.fit`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

LAW_PARAMETERS = ("R0", "A", "a", "B", "b")
LOG_PARAMETERS = ("A", "B")  # positive amplitudes, fitted as logs


@dataclasses.dataclass(frozen=True)
class Term:
    """One summand of N_SI or N_CF: a parameter-count component times 1 (coefficient None) or a free coefficient."""

    component: str
    coefficient: str | None = None


@dataclasses.dataclass(frozen=True)
class ScalingLaw:
    """Recall = R0 - A / N_SI^a - B / N_CF^b with N_SI, N_CF sums of components (in units of `unit`)."""

    name: str
    si: tuple[Term, ...]
    cf: tuple[Term, ...]
    unit: float = 1e6

    def __post_init__(self):
        if not self.si or not self.cf:
            raise ValueError(f"scaling law {self.name!r}: N_SI and N_CF need at least one term each")
        clash = set(self.coefficients) & set(LAW_PARAMETERS)
        if clash:
            raise ValueError(f"scaling law {self.name!r}: coefficient names {sorted(clash)} clash with R0, A, a, B, b")

    @property
    def coefficients(self) -> tuple[str, ...]:
        """Free coefficient names, in order of first appearance (N_SI terms, then N_CF terms)."""
        names: list[str] = []
        for term in self.si + self.cf:
            if term.coefficient is not None and term.coefficient not in names:
                names.append(term.coefficient)
        return tuple(names)

    @property
    def components(self) -> tuple[str, ...]:
        names: list[str] = []
        for term in self.si + self.cf:
            if term.component not in names:
                names.append(term.component)
        return tuple(names)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return LAW_PARAMETERS + self.coefficients

    def describe(self) -> str:
        """The form as text, e.g. `R0 - A/(recommender + gamma1*text_encoder)^a - B/recommender^b`."""
        unit = "millions" if self.unit == 1e6 else f"units of {self.unit:g}"
        return f"R0 - A/({sum_text(self.si)})^a - B/({sum_text(self.cf)})^b  [counts in {unit}]"

    def sizes(self, params: Mapping[str, float], components: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(N_SI, N_CF) per point, in units."""
        return (_size(self.si, params, components, self.unit), _size(self.cf, params, components, self.unit))

    def predict(self, params: Mapping[str, float], components: Mapping[str, np.ndarray]) -> np.ndarray:
        """Recall predicted at each point; a term whose amplitude is 0 is left out (its exponent is unused)."""
        n_si, n_cf = self.sizes(params, components)
        value = np.full(n_si.shape, float(params["R0"]))
        if params["A"]:
            value -= params["A"] * n_si ** -params["a"]
        if params["B"]:
            value -= params["B"] * n_cf ** -params["b"]
        return value


def sum_text(terms: Sequence[Term]) -> str:
    """A size term as text, e.g. "N_RS + gamma1*N_LLM"."""
    return " + ".join(t.component if t.coefficient is None else f"{t.coefficient}*{t.component}" for t in terms)


def _size(terms: Sequence[Term], params: Mapping[str, float], components: Mapping[str, np.ndarray],
          unit: float) -> np.ndarray:
    total = 0.0
    for term in terms:
        weight = 1.0 if term.coefficient is None else params[term.coefficient]
        total = total + weight * np.asarray(components[term.component], dtype=np.float64) / unit
    return np.asarray(total, dtype=np.float64)


def predict_with_gradient(law: ScalingLaw, params: Mapping[str, float], components: Mapping[str, np.ndarray]
                          ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Prediction [P] and its derivative with respect to each theta coordinate, keyed by parameter name.

    theta is R0, log A, a, log B, b and log of each coefficient, so every derivative here is d/d(theta_name).
    """
    n_si, n_cf = law.sizes(params, components)
    term_a = params["A"] * n_si ** -params["a"]  # A / N_SI^a
    term_b = params["B"] * n_cf ** -params["b"]
    value = params["R0"] - term_a - term_b
    grads = {"R0": np.ones_like(value), "A": -term_a, "a": term_a * np.log(n_si), "B": -term_b,
             "b": term_b * np.log(n_cf)}
    for name in law.coefficients:
        grads[name] = np.zeros_like(value)
    # d value / d log g = (dvalue/dN) * g * n_component, with dvalue/dN_SI = a A N_SI^(-a-1) (likewise for CF).
    for terms, slope in ((law.si, params["a"] * term_a / n_si), (law.cf, params["b"] * term_b / n_cf)):
        for term in terms:
            if term.coefficient is not None:
                count = np.asarray(components[term.component], dtype=np.float64) / law.unit
                grads[term.coefficient] = grads[term.coefficient] + slope * params[term.coefficient] * count
    return value, grads


SID_GR = ScalingLaw("sid_gr", si=(Term("recommender"), Term("text_encoder", "gamma1"), Term("quantizer", "gamma2")),
                    cf=(Term("recommender"),))
LLM_AS_RS = ScalingLaw("llm_as_rs", si=(Term("lora"), Term("llm", "gamma")), cf=(Term("lora"), Term("llm", "beta")))
SINGLE = ScalingLaw("single", si=(Term("recommender"),), cf=(Term("recommender"),))
PRESETS = {law.name: law for law in (SID_GR, LLM_AS_RS, SINGLE)}

# Liu et al. 2025, Table 1 (fitted SID-GR law, Recall@10). Keyed by (dataset, form); only values we have verified.
PAPER_TABLE1: dict[tuple[str, str], dict[str, float]] = {
    ("beauty", "sid_gr"): {"R0": 0.4529, "A": 16.8, "B": 0.01, "a": 0.6, "b": 2.23, "r2": 0.94},
}


def preset(name: str) -> ScalingLaw:
    if name not in PRESETS:
        raise ValueError(f"unknown scaling-law form {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[name]
