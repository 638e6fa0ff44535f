"""Learning objectives as values: each holds its own options and returns a batch's surrogate loss.

An objective is a small frozen dataclass (hashable, so it is static under ``jit``) whose
fields are its options and whose :meth:`Objective.loss` calls the pure loss functions of
:mod:`towerjax.losses` (and :mod:`towerjax.two_stage`) on one batch. A
:class:`towerjax.TrainConfig` holds one objective value::

    TrainConfig(objective=DR(cap=10.0))
    TrainConfig(objective=TwoStage(candidates=20, unbiased=True))

:data:`OBJECTIVES` maps the command line's names to the classes; the command line builds
each objective's flags from its fields (``--cap``, ``--clip``, ``--k``, ...), and the help
text from each field's ``metadata["help"]``.

Adding an estimator: write its loss function (``towerjax/losses.py``), its objective class
here, one line in :data:`OBJECTIVES`, and its tests (CONTRIBUTING.md).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
from jax.typing import ArrayLike

from towerjax import losses
from towerjax.checks import InputError, check_nonnegative, check_positive, check_positive_int
from towerjax.two_stage import two_stage_ips_loss

__all__ = [
    "DR",
    "DROS",
    "IPS",
    "OBJECTIVES",
    "PG_ENTROPY",
    "SNDR",
    "SNIPS",
    "LogSmoothingIPS",
    "Naive",
    "Objective",
    "OneOf",
    "Regression",
    "SubGaussianIPS",
    "SwitchDR",
    "TopK",
    "TwoStage",
    "WeightedRegression",
    "objective_from_name",
]


def _option(default, help: str):
    """A dataclass field with its command-line help."""
    return dataclasses.field(default=default, metadata={"help": help})


# The policy-gradient objectives' default entropy bonus, chosen by benchmarks/learning.py: without
# it IPS, SNIPS and DR send every context to one item on most tasks (benchmarks/RESULTS.md).
PG_ENTROPY = 0.05
_ENTROPY = "entropy bonus beta >= 0: adds -beta mean H(pi) (against collapse)"


@dataclasses.dataclass(frozen=True)
class Objective:
    """Base of the objectives. Subclasses set ``name`` and override :meth:`surrogate`.

    Every objective has two regularisers against collapse (SPEC 7), off by default:
    ``entropy`` (``beta``: adds ``-beta mean_i H(pi(.|x_i))``) and ``kl`` (``lambda``: adds
    ``lambda mean_i KL(pi(.|x_i) || pi_0(.|x_i))``, which needs the logging policy's
    distribution ``pi_b``, logged or from the behaviour head).

    Class attributes:
      name: the registry and command-line name (``--objective NAME``).
      needs_q_hat: the loss reads a reward model's ``q_hat [B, A]`` (fitted by the trainer).
      needs_key: the loss samples (e.g. candidate sets) and needs a key per step.
      logged_only: the surrogate reads ``scores`` and ``log_pi`` only at the logged action,
        so it trains with a sampled softmax (``TrainConfig.sampled_softmax``: a ``[B, 1]``
        column of the logged items' estimates); objectives summing over all items (DR's
        direct term, two-stage candidate sets) do not.
      sampled_row: the surrogate sums over all items only in DR's direct term
        ``sum_a sg(pi(a|x_i)) q_hat(x_i, a) log pi(a|x_i)``, so it trains with a sampled
        softmax on the sampled row ``[B, 1 + M]`` (the logged item in column 0, then the
        ``M`` samples, :func:`towerjax.large_softmax.sampled_log_softmax_from_ids`, and
        ``q_hat`` of the same items): the direct term becomes the self-normalised estimate
        over the samples, the residual term reads ``log pi_hat(a_i|x_i)`` (DR, SN-DR,
        Switch-DR, DR-OS; not two-stage, whose candidate sets need the full policy).
    """

    name: ClassVar[str] = ""
    needs_q_hat: ClassVar[bool] = False
    needs_key: ClassVar[bool] = False
    logged_only: ClassVar[bool] = True
    sampled_row: ClassVar[bool] = False
    entropy: float = _option(0.0, _ENTROPY)
    kl: float = _option(
        0.0, "KL penalty lambda >= 0 toward the logging policy (needs pi_b or the behaviour head)"
    )

    def __post_init__(self) -> None:
        check_nonnegative("entropy", self.entropy)
        check_nonnegative("kl", self.kl)

    @property
    def needs_pi_b(self) -> bool:
        """The loss reads the logging policy's distribution ``pi_b [B, A]`` (the KL penalty)."""
        return self.kl > 0

    def loss(
        self,
        *,
        scores: jax.Array,
        log_pi: jax.Array,
        action: jax.Array,
        reward: jax.Array,
        pscore: jax.Array,
        q_hat: jax.Array | None = None,
        key: jax.Array | None = None,
        mask: ArrayLike | None = None,
        pi_b: jax.Array | None = None,
    ) -> jax.Array:
        """The scalar loss of one batch: :meth:`surrogate` plus the regularisers.

        Args:
          scores: ``[B, A]`` raw two-tower scores.
          log_pi: ``[B, A]`` the policy's log-probabilities ``log_softmax(scores / tau)``.
          action, reward, pscore: ``[B]`` the logged actions, rewards and propensities.
          q_hat: ``[B, A]`` reward-model predictions (when ``needs_q_hat``).
          key: randomness (when ``needs_key``).
          mask: ``[B]`` event weights (0 for padding).
          pi_b: ``[B, A]`` the logging policy's distribution (when ``needs_pi_b``).
        """
        loss = self.surrogate(
            scores=scores,
            log_pi=log_pi,
            action=action,
            reward=reward,
            pscore=pscore,
            q_hat=q_hat,
            key=key,
            mask=mask,
        )
        if not _is_zero(self.entropy):  # a traced bonus (a search's candidates) always applies
            loss = loss + self.entropy * losses.entropy_bonus(log_pi, mask=mask)
        if self.kl:
            if pi_b is None:
                raise InputError(
                    "kl",
                    "the KL penalty needs the logging policy's distribution: logs with pi_b, "
                    "or estimate_propensities=True (the behaviour head)",
                )
            loss = loss + self.kl * losses.kl_to_logging(log_pi, pi_b, mask=mask)
        return loss

    def surrogate(
        self,
        *,
        scores: jax.Array,
        log_pi: jax.Array,
        action: jax.Array,
        reward: jax.Array,
        pscore: jax.Array,
        q_hat: jax.Array | None = None,
        key: jax.Array | None = None,
        mask: ArrayLike | None = None,
    ) -> jax.Array:
        """The objective's own surrogate loss of one batch (arguments as in :meth:`loss`)."""
        raise NotImplementedError

    def options(self) -> dict:
        """The objective's options as a dict (its fields)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_dict(self) -> dict:
        """``{"name": ..., **options}``, JSON-ready."""
        options = {k: list(v) if isinstance(v, tuple) else v for k, v in self.options().items()}
        return {"name": self.name, **options}

    def _check_q_hat(self, q_hat) -> None:
        if q_hat is None:
            raise InputError("q_hat", f"the {self.name} objective needs a reward model's q_hat [B, A]")


def _is_zero(value) -> bool:
    """``value`` is a concrete 0 (a traced value, under ``jit``, never is)."""
    return not isinstance(value, jax.core.Tracer) and value == 0


def _check_weights(cap, clip, variance_penalty) -> tuple[float, float] | None:
    """Validates the weight options (naming the field); returns ``clip`` as a tuple or None."""
    check_nonnegative("variance_penalty", variance_penalty)
    return losses.check_weight_options(cap, clip)


_CAP = "cap min(w, C) on the importance weights (biased toward the logging policy)"
_CLIP = "clip the weights to [c_min, c_max]: 'LO,HI', or 'none' (biased likewise)"
_PENALTY = "POEM variance penalty lambda >= 0"
_SELF_NORMALIZE = "self-normalise the weights, with the SNIPS baseline (the SNIPS / SN-DR gradient)"


@dataclasses.dataclass(frozen=True)
class _Weighted(Objective):
    """Options shared by IPS and DR: weight cap or clip, self-normalisation, POEM penalty."""

    entropy: float = _option(PG_ENTROPY, _ENTROPY)
    cap: float | None = _option(None, _CAP)
    clip: tuple[float, float] | None = _option(None, _CLIP)
    self_normalize: bool = _option(False, _SELF_NORMALIZE)
    variance_penalty: float = _option(0.0, _PENALTY)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "clip", _check_weights(self.cap, self.clip, self.variance_penalty))

    def weight_options(self) -> dict:
        """``{"cap", "clip", "self_normalize"}`` as the loss applies them."""
        return {"cap": self.cap, "clip": self.clip, "self_normalize": self.self_normalize}

    def _force_self_normalize(self) -> None:
        if self.self_normalize is not True:
            raise InputError("self_normalize", f"the {self.name} objective always self-normalises")


@dataclasses.dataclass(frozen=True)
class IPS(_Weighted):
    """Inverse propensity scoring: :func:`towerjax.losses.ips_loss`.

    ``baseline``: BanditNet's translation ``lambda`` (a number) or ``"optimal"``
    (``sum w^2 r / sum w^2``); not with ``self_normalize`` (SNIPS has its own).
    """

    name: ClassVar[str] = "ips"
    baseline: float | str | None = _option(
        None, "reward baseline: BanditNet's lambda (a number), 'optimal', or 'none'"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "baseline", losses.check_baseline(self.baseline, self.self_normalize))

    def surrogate(self, *, scores, log_pi, action, reward, pscore, q_hat=None, key=None, mask=None):
        return losses.ips_loss(
            log_pi,
            action,
            reward,
            pscore,
            baseline=self.baseline,
            variance_penalty=self.variance_penalty,
            mask=mask,
            **self.weight_options(),
        )


@dataclasses.dataclass(frozen=True)
class SNIPS(IPS):
    """Self-normalised IPS: :class:`IPS` with ``self_normalize=True`` (always), the SNIPS gradient."""

    name: ClassVar[str] = "snips"
    self_normalize: bool = _option(True, "always on for snips and sndr")

    def __post_init__(self) -> None:
        self._force_self_normalize()
        super().__post_init__()


@dataclasses.dataclass(frozen=True)
class DR(_Weighted):
    """Doubly robust: :func:`towerjax.losses.dr_loss` with the trainer's (cross-fitted) reward model."""

    name: ClassVar[str] = "dr"
    needs_q_hat: ClassVar[bool] = True
    logged_only: ClassVar[bool] = False
    sampled_row: ClassVar[bool] = True

    def surrogate(self, *, scores, log_pi, action, reward, pscore, q_hat=None, key=None, mask=None):
        self._check_q_hat(q_hat)
        return losses.dr_loss(
            log_pi,
            action,
            reward,
            pscore,
            q_hat,
            variance_penalty=self.variance_penalty,
            mask=mask,
            **self.weight_options(),
        )


@dataclasses.dataclass(frozen=True)
class SNDR(DR):
    """Self-normalised doubly robust: :class:`DR` with ``self_normalize=True`` (always)."""

    name: ClassVar[str] = "sndr"
    self_normalize: bool = _option(True, "always on for snips and sndr")

    def __post_init__(self) -> None:
        self._force_self_normalize()
        super().__post_init__()


@dataclasses.dataclass(frozen=True)
class SwitchDR(Objective):
    """Switch-DR: :func:`towerjax.losses.switch_dr_loss` (DR's residual only where ``w <= threshold``)."""

    name: ClassVar[str] = "switch-dr"
    entropy: float = _option(PG_ENTROPY, _ENTROPY)
    needs_q_hat: ClassVar[bool] = True
    logged_only: ClassVar[bool] = False
    sampled_row: ClassVar[bool] = True
    threshold: float = _option(10.0, "switch-dr: use the residual term only where w <= threshold")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "threshold", check_positive("threshold", self.threshold))

    def surrogate(self, *, scores, log_pi, action, reward, pscore, q_hat=None, key=None, mask=None):
        self._check_q_hat(q_hat)
        return losses.switch_dr_loss(
            log_pi, action, reward, pscore, q_hat, threshold=self.threshold, mask=mask
        )


@dataclasses.dataclass(frozen=True)
class DROS(Objective):
    """DR with optimistic shrinkage: :func:`towerjax.losses.dr_os_loss`."""

    name: ClassVar[str] = "dr-os"
    entropy: float = _option(PG_ENTROPY, _ENTROPY)
    needs_q_hat: ClassVar[bool] = True
    logged_only: ClassVar[bool] = False
    sampled_row: ClassVar[bool] = True
    shrinkage: float = _option(10.0, "dr-os: shrinkage lambda > 0 of w~ = lambda w / (w^2 + lambda)")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "shrinkage", check_positive("shrinkage", self.shrinkage))

    def surrogate(self, *, scores, log_pi, action, reward, pscore, q_hat=None, key=None, mask=None):
        self._check_q_hat(q_hat)
        return losses.dr_os_loss(log_pi, action, reward, pscore, q_hat, shrinkage=self.shrinkage, mask=mask)


@dataclasses.dataclass(frozen=True)
class SubGaussianIPS(Objective):
    """Sub-Gaussian IPS (Metelli et al. 2021): :func:`towerjax.losses.subgaussian_ips_loss`."""

    name: ClassVar[str] = "ipw-subgauss"
    entropy: float = _option(PG_ENTROPY, _ENTROPY)
    correction: float = _option(0.1, "ipw-subgauss: lambda in [0, 1] of w~ = w / (1 - lambda + lambda w)")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "correction", losses.check_unit_interval("correction", self.correction))

    def surrogate(self, *, scores, log_pi, action, reward, pscore, q_hat=None, key=None, mask=None):
        return losses.subgaussian_ips_loss(log_pi, action, reward, pscore, lam=self.correction, mask=mask)


@dataclasses.dataclass(frozen=True)
class LogSmoothingIPS(Objective):
    """IPS with logarithmic smoothing (Sakhi et al. 2024): :func:`towerjax.losses.log_smoothing_ips_loss`."""

    name: ClassVar[str] = "ipw-ls"
    entropy: float = _option(PG_ENTROPY, _ENTROPY)
    smoothing: float = _option(1.0, "ipw-ls: lambda > 0 of log(1 + lambda w r) / lambda")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "smoothing", check_positive("smoothing", self.smoothing))

    def surrogate(self, *, scores, log_pi, action, reward, pscore, q_hat=None, key=None, mask=None):
        return losses.log_smoothing_ips_loss(log_pi, action, reward, pscore, lam=self.smoothing, mask=mask)


@dataclasses.dataclass(frozen=True)
class Regression(Objective):
    """Supervised baseline: :func:`towerjax.losses.regression_loss` on the scores."""

    name: ClassVar[str] = "regression"

    def surrogate(self, *, scores, log_pi, action, reward, pscore, q_hat=None, key=None, mask=None):
        return losses.regression_loss(scores, action, reward, mask=mask)


@dataclasses.dataclass(frozen=True)
class WeightedRegression(Objective):
    """IPS-weighted regression (Schnabel et al. 2016): :func:`towerjax.losses.weighted_regression_loss`."""

    name: ClassVar[str] = "ips-regression"
    cap: float | None = _option(None, _CAP)
    clip: tuple[float, float] | None = _option(None, _CLIP)
    self_normalize: bool = _option(False, "ips-regression: divide by the sum of the weights 1/p")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "clip", _check_weights(self.cap, self.clip, 0.0))

    def surrogate(self, *, scores, log_pi, action, reward, pscore, q_hat=None, key=None, mask=None):
        return losses.weighted_regression_loss(
            scores,
            action,
            reward,
            pscore,
            cap=self.cap,
            clip=self.clip,
            self_normalize=self.self_normalize,
            mask=mask,
        )


@dataclasses.dataclass(frozen=True)
class Naive(Objective):
    """No off-policy correction: :func:`towerjax.losses.naive_loss`."""

    name: ClassVar[str] = "naive"

    def surrogate(self, *, scores, log_pi, action, reward, pscore, q_hat=None, key=None, mask=None):
        return losses.naive_loss(log_pi, action, reward, mask=mask)


@dataclasses.dataclass(frozen=True)
class TopK(Objective):
    """Top-K off-policy correction: :func:`towerjax.losses.topk_ips_loss`."""

    name: ClassVar[str] = "topk"
    k: int = _option(2, "slate size K of the top-K correction")
    cap: float | None = _option(None, "cap on w * lambda_K")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "k", check_positive_int("k", self.k))
        losses.check_weight_options(self.cap, None)

    def surrogate(self, *, scores, log_pi, action, reward, pscore, q_hat=None, key=None, mask=None):
        return losses.topk_ips_loss(log_pi, action, reward, pscore, k=self.k, cap=self.cap, mask=mask)


TWO_STAGE_CLIP = (0.01, 10.0)  # Ma et al. 2020's weight clipping (then self-normalised)


@dataclasses.dataclass(frozen=True)
class TwoStage(Objective):
    """Two-stage IPS (Ma et al. 2020): :func:`towerjax.two_stage.two_stage_ips_loss`.

    The trainer's reward model is the fixed ranker (items scored by ``q_hat``). Defaults are
    Ma et al.'s: weights clipped to ``(0.01, 10)`` then self-normalised; give ``clip=None``
    to use ``cap`` instead, or neither.
    """

    name: ClassVar[str] = "two-stage"
    needs_q_hat: ClassVar[bool] = True
    logged_only: ClassVar[bool] = False
    needs_key: ClassVar[bool] = True
    candidates: int = _option(30, "candidate set size k (at most the number of items)")
    num_samples: int = _option(100, "sampled candidate sets T per event")
    alpha: float = _option(1e-3, "weight of the other candidates' score terms (not with --unbiased)")
    unbiased: bool = _option(False, "the exact gradient of the sampled two-stage policy's value")
    cap: float | None = _option(None, _CAP)
    clip: tuple[float, float] | None = _option(TWO_STAGE_CLIP, _CLIP)
    self_normalize: bool = _option(True, _SELF_NORMALIZE)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("candidates", "num_samples"):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        check_nonnegative("alpha", self.alpha)
        object.__setattr__(self, "clip", _check_weights(self.cap, self.clip, 0.0))

    def surrogate(self, *, scores, log_pi, action, reward, pscore, q_hat=None, key=None, mask=None):
        self._check_q_hat(q_hat)
        if key is None:
            raise InputError("key", "the two-stage objective samples candidate sets and needs a key")
        return two_stage_ips_loss(
            key,
            log_pi,
            action,
            reward,
            pscore,
            q_hat,
            k=min(self.candidates, scores.shape[-1]),
            num_samples=self.num_samples,
            alpha=None if self.unbiased else self.alpha,
            unbiased=self.unbiased,
            cap=self.cap,
            clip=self.clip,
            self_normalize=self.self_normalize,
            mask=mask,
        )


@dataclasses.dataclass(frozen=True)
class OneOf(Objective):
    """One of several objectives, picked by ``index``: a search's candidates of different
    objectives train as one compiled call (:mod:`towerjax.training.search`), ``index`` traced
    per candidate (``TrainConfig`` traced field ``"choice"``).

    Every choice's surrogate is computed and the picked one returned (under ``vmap`` a
    ``lax.switch`` on a batched index computes every branch anyway); the gradient flows
    through the picked one only. The towers' forward and backward passes are shared, so the
    extra cost is the other surrogates on the ``[B, A]`` scores. The choices' own entropy
    bonuses are replaced by this value's ``entropy`` (traced per candidate too); their KL
    penalties must be 0.
    """

    name: ClassVar[str] = "one-of"
    choices: tuple[Objective, ...] = ()
    index: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.choices or not all(isinstance(c, Objective) for c in self.choices):
            raise InputError("choices", f"expected objective values, got {self.choices!r}")
        if any(c.kl for c in self.choices) or self.kl:
            raise InputError("kl", "the KL penalty is not searched; expected kl=0 for every choice")
        if any(isinstance(c, OneOf) for c in self.choices):
            raise InputError("choices", "expected plain objectives, not OneOf")

    @property
    def needs_q_hat(self) -> bool:  # type: ignore[override]
        return any(c.needs_q_hat for c in self.choices)

    @property
    def needs_key(self) -> bool:  # type: ignore[override]
        return any(c.needs_key for c in self.choices)

    @property
    def logged_only(self) -> bool:  # type: ignore[override]
        return all(c.logged_only for c in self.choices)

    @property
    def sampled_row(self) -> bool:  # type: ignore[override]
        """Some choice needs the sampled row, and every choice reads it (logged-only choices
        read its column 0, the logged item)."""
        choices = self.choices
        return any(c.sampled_row for c in choices) and all(c.logged_only or c.sampled_row for c in choices)

    def surrogate(self, *, scores, log_pi, action, reward, pscore, q_hat=None, key=None, mask=None):
        batch = dict(scores=scores, log_pi=log_pi, action=action, reward=reward, pscore=pscore)
        values = [choice.surrogate(**batch, q_hat=q_hat, key=key, mask=mask) for choice in self.choices]
        return jax.numpy.stack(values)[self.index]

    def to_dict(self) -> dict:
        return {"name": self.name, "choices": [c.to_dict() for c in self.choices], "index": self.index}


OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls
    for cls in (
        IPS,
        SNIPS,
        DR,
        SNDR,
        SwitchDR,
        DROS,
        SubGaussianIPS,
        LogSmoothingIPS,
        Regression,
        WeightedRegression,
        Naive,
        TopK,
        TwoStage,
    )
}

# Open Bandit Pipeline's estimator names for the same objectives.
ALIASES = {"ipw": "ips", "snipw": "snips"}


def objective_from_name(name: str, **options) -> Objective:
    """The objective registered as ``name``, built with ``options`` (its fields)."""
    name = ALIASES.get(name, name)
    if name not in OBJECTIVES:
        raise InputError("objective", f"expected one of {tuple(OBJECTIVES)}, got {name!r}")
    cls = OBJECTIVES[name]
    known = {f.name for f in dataclasses.fields(cls)}
    for option in options:
        if option not in known:
            raise InputError(option, f"not an option of the {name} objective (it has {sorted(known)})")
    return cls(**options)
